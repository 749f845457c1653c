"""An independent generator of synthetic UK-style person records, for checking linkage accuracy.

Written from scratch, separately from tre-link's own generator (it imports nothing from ``tre_link``),
so that accuracy can be measured on records whose quirks were not designed by the code under test.
Everything is fictitious: names come from hand-written lists of common forenames and surnames, NHS
numbers are random valid Modulus 11 numbers, postcodes are random inward codes on real outward codes.

    python bench/altsynth.py --records 150000 --seed 7 --out DIR

writes ``DIR/registry.parquet``, ``DIR/community.parquet`` and ``DIR/truth.parquet`` and prints one JSON
line of aggregate counts (never record values).

    from bench.altsynth import generate, write_parquet, SOURCES
    pop = generate(records=150_000, seed=7)

Two providers
-------------
``registry`` (60 % of ``records``): a population register. Columns ``reg_id, nhs_no, first_names,
surname, date_birth (yyyy-MM-dd), gender (M/F/U), postcode, address_1, uprn, ethnicity``.

``community`` (the other 40 %): a community-services system. Columns ``client_ref, nhs_number,
forename, family_name, birth_dt (dd/MM/yyyy), sex_code (1/2/9), post_code, addr_line, uprn_ref``.

``truth``: ``source, record_id, person_id``; one row per record. Person ids start with ``P``, registry
ids with ``REG``, community ids with ``CR``, so a person id never equals a record id.

Population
----------
* People are grouped into households of 1-5 (30/33/16/14/7 % of households) sharing a postcode unit,
  a house number on the unit's street and a 12-digit UPRN. The first member of a household is an adult.
  About 14 households per postcode unit; units spread over 170 outward codes in 26 towns
  (district weights drawn per seed, London and the big cities weighted up).
* Name origin: seven groups (British/Irish 76 %, South Asian 8 %, East European 5 %, Black African /
  Caribbean 4 %, Middle Eastern 2.5 %, Southern European / Turkish 2.5 %, East Asian 2 %); a household
  has one group, 7 % of members get another. Each group has its own forename (per sex) and surname
  lists drawn Zipf-like (weight 1/(rank+q)^s); some groups mostly carry British/Irish forenames or
  surnames (e.g. 50 % of Black Caribbean/African forenames and 45 % of their surnames). In all 246
  male and 230 female forenames and 392 surnames; forenames weight 1/(rank+5)^0.85, surnames
  1/(rank+6)^0.75 (at 1.5M records: SMITH 1.9 % of registry surnames, SARAH 1.4 % of first
  names). Ethnicity codes (NHS 2001 categories A-Z) follow the group.
* 85 % of household members carry the household surname. ~15 % have a middle name.
* Ages 0-100 (flat to 55, then a half-normal tail), reference date 2024-06-30.
* NHS numbers: unique per person, valid Modulus 11, first digit 4, 6 or 7 (England/Wales ranges;
  never the 9xx test range, never the Scottish CHI range).

Who appears where
-----------------
* ~70 % of the people in ``community`` are also in ``registry``.
* Records per person: registry 1/2/3 with 90.5/8/1.5 %; community 94/5/1 %.
  At 1.5M records: ~1.0M people and ~0.6M true pairs (cross-source and within-source).

Person-level differences between records ("variants")
------------------------------------------------------
A variant applies to all the person's records in one randomly chosen source if the person is in both
sources (plus 25 % of their other duplicates), else to their 2nd/3rd records within the one source.

* House move: 15 % of households (so ~15 % of people) have a previous address: 40 % nearby (another
  unit in the same outward code), 60 % anywhere. The previous address has its own postcode, house
  number and UPRN; the whole household moves and the variant source is shared by the household.
* Marriage: 8 % of women aged 18+ carry a different (former) surname in the variant records.

Record-level errors (registry / community)
------------------------------------------
=====================================  ===========  ===========
error                                   registry     community
=====================================  ===========  ===========
nickname, of records with a nickname      2 %          10 %
  (hand-written map of 114 forenames,
  43 % of people; so 0.9 % / 4.3 % of all)
middle name shown (of people with one)   92 %          3 %
middle name used as forename (ditto)       -            1.5 %
forename typo                             3 %           4.5 %
surname typo                              2.5 %         4 %
  (typo = keyboard-neighbour substitution 40 %, deletion 25 %, insertion 20 % (half doubled
  letters), transposition 15 %; the first letter is rarely touched)
forename and surname swapped               -            0.4 %
forename missing                          0.3 %         0.8 %
surname missing                           0.2 %         0.5 %
DOB day/month swapped (where day <= 12    1 %           2 %
  and day != month)
DOB year off by one                       0.5 %         0.5 %
DOB day off by one                        0.3 %         0.5 %
DOB placeholder 01/01/1900                 -            0.1 %
DOB missing                               0.3 %         1 %
sex unknown (U / 9)                       1 %           1.5 %
sex missing                               1 %           3 %
sex miscoded as the other sex             0.5 %         0.3 %
NHS number missing                        4 %           60 %
NHS number one-digit typo                 0.5 %         0.4 %
  (substitution 80 %, transposition of two different adjacent digits 20 %; with Modulus 11's
  weights 10..2 either always fails the check, so a present number is valid iff it is untouched)
NHS number written "943 476 5919"          -            45 % of present
postcode typo (one inward character)      0.5 %         0.8 %
postcode missing                          1.5 %         3 %
postcode lowercase / without space         -            10 % / 15 %
house number wrong                        0.5 %         0.7 %
address missing                           2 %           4 %
UPRN missing                              20 %          40 %
ethnicity missing / different code        10 % / 3 %     -
names with leading/trailing space         1 %           3 %
=====================================  ===========  ===========

About a quarter of missing values are empty strings instead of nulls (registry NHS number and all
community fields). Registry names are upper case; community names are upper case 55 %, title case
40 %, lower case 5 %. Registry addresses are "12 Acacia Avenue" (5 % upper case); community address
lines come in five styles: "12 ACACIA AVENUE" 35 %, "12, ACACIA AVE" 25 %, "12 Acacia Ave" 15 %,
"12 Acacia Avenue, Leeds" 15 %, "12 acacia avenue" 10 %.

Measured at 1.5M records (seed 7), over the 466k true registry x community pairs after upper-casing
and removing spaces: first forename differs 14 %, surname 11 %, postcode 19 %, DOB 2.9 % (day/month
swapped 1.0 %); registry NHS number missing 4.0 %, community 60 %.

Implementation: numpy for every random draw, pyarrow compute kernels for strings; no per-record
Python loops. Deterministic for a seed (one ``numpy.random.Generator`` drawn in a fixed order).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

SOURCES = ("registry", "community")
REGISTRY_SHARE = 0.6
COMMUNITY_ALSO_IN_REGISTRY = 0.70
DUPLICATES = {"registry": (0.905, 0.08, 0.015), "community": (0.94, 0.05, 0.01)}  # P(1, 2, 3 records)
HOUSEHOLD_SIZES = (0.30, 0.33, 0.16, 0.14, 0.07)  # households of 1..5 people
HOUSEHOLDS_PER_UNIT = 14
MOVER_HOUSEHOLDS = 0.15
MOVE_NEARBY = 0.40
MARRIED_NAME_WOMEN = 0.08
OWN_GROUP_IN_HOUSEHOLD = 0.93
HOUSEHOLD_SURNAME = 0.85
REFERENCE_DATE = "2024-06-30"

# Per-record rates: (registry, community). See the table in the docstring.
RATES = {
    "nickname": (0.02, 0.10),
    "middle_shown": (0.92, 0.03),
    "middle_as_forename": (0.0, 0.015),
    "forename_typo": (0.03, 0.045),
    "surname_typo": (0.025, 0.04),
    "names_swapped": (0.0, 0.004),
    "forename_missing": (0.003, 0.008),
    "surname_missing": (0.002, 0.005),
    "dob_day_month_swap": (0.01, 0.02),
    "dob_year_off": (0.005, 0.005),
    "dob_day_off": (0.003, 0.005),
    "dob_placeholder": (0.0, 0.001),
    "dob_missing": (0.003, 0.01),
    "sex_unknown": (0.01, 0.015),
    "sex_missing": (0.01, 0.03),
    "sex_miscoded": (0.005, 0.003),
    "nhs_missing": (0.04, 0.60),
    "nhs_typo": (0.005, 0.004),
    "nhs_spaced": (0.0, 0.45),
    "postcode_typo": (0.005, 0.008),
    "postcode_missing": (0.015, 0.03),
    "postcode_lower": (0.0, 0.10),
    "postcode_no_space": (0.0, 0.15),
    "house_number_wrong": (0.005, 0.007),
    "address_missing": (0.02, 0.04),
    "uprn_missing": (0.20, 0.40),
    "ethnicity_missing": (0.10, 0.0),
    "ethnicity_other": (0.03, 0.0),
    "name_whitespace": (0.01, 0.03),
}
EMPTY_SHARE_OF_MISSING = 0.25

# ------------------------------------------------------------------------------------------------
# Hand-written lists (fictitious combinations of common names; no real person's data)
# ------------------------------------------------------------------------------------------------

_BRITISH_MALE = """
DAVID JOHN JAMES MICHAEL PAUL ANDREW PETER ROBERT MARK RICHARD STEPHEN THOMAS CHRISTOPHER WILLIAM
DANIEL MATTHEW GEORGE JACK OLIVER HARRY IAN ANTHONY SIMON JOSEPH SAMUEL BENJAMIN ALEXANDER EDWARD
KEVIN GARY NEIL JONATHAN NICHOLAS LUKE ADAM CHARLES CRAIG SCOTT LEWIS RYAN JAMIE LIAM CONNOR CALLUM
KIERAN JOSHUA NATHAN ALFIE NOAH LEO OSCAR ARTHUR FREDDIE THEO HENRY ARCHIE JACOB LOGAN DYLAN ETHAN
TYLER MASON FINLEY HARVEY REECE JORDAN BRADLEY SEAN DECLAN PATRICK CIARAN EOIN RHYS GARETH DAFYDD
EVAN OWEN EWAN ANGUS HAMISH FRASER KENNETH RAYMOND GEOFFREY FREDERICK ALFRED LEONARD DOUGLAS GERALD
TERENCE GREGORY PHILIP TIMOTHY FRANCIS ROY DEREK BARRY KEITH TREVOR GRAHAM COLIN ALAN BRIAN MALCOLM
NIGEL STUART DEAN LEE CARL WAYNE DARREN JASON SHAUN ROSS MAX TOBY
"""
_BRITISH_FEMALE = """
SARAH ELIZABETH MARGARET SUSAN HELEN JULIE KAREN LISA EMMA CLAIRE NICOLA RACHEL LOUISE AMY LAURA
JESSICA SOPHIE OLIVIA EMILY CHARLOTTE AMELIA ISLA AVA GRACE MIA POPPY ELLA LILY EVIE ISABELLA FREYA
FLORENCE ROSIE MATILDA ELSIE IVY HANNAH LUCY CHLOE MEGAN BETHANY REBECCA KATHERINE CATHERINE
JENNIFER VICTORIA SAMANTHA JACQUELINE ABIGAIL ELEANOR GEORGINA ALEXANDRA DOROTHY FRANCESCA JOSEPHINE
NATALIE ANNE MARY PATRICIA DEBORAH CHRISTINE BARBARA THERESA KIMBERLEY JOAN JEAN MAUREEN BRENDA
SHEILA PAULINE BEVERLEY TRACEY JOANNE ANGELA DAWN SHARON WENDY LINDA CAROL JANET GILLIAN DIANE
ALISON TERESA AMANDA KELLY DONNA HAYLEY GEMMA LEANNE KIRSTY STACEY ZOE HOLLY JADE KATIE ELLIE
PHOEBE ERIN CAITLIN SIOBHAN AOIFE NIAMH BRONWEN CERYS SIAN MORAG ESME HARRIET IMOGEN ISABEL
BEATRICE VIOLET EDITH AGNES
"""
_BRITISH_SURNAMES = """
SMITH JONES WILLIAMS TAYLOR BROWN DAVIES EVANS WILSON THOMAS JOHNSON ROBERTS ROBINSON THOMPSON
WRIGHT WALKER WHITE EDWARDS HUGHES GREEN HALL LEWIS HARRIS CLARKE JACKSON WOOD TURNER MARTIN COOPER
HILL WARD MORRIS MOORE CLARK LEE KING BAKER HARRISON MORGAN ALLEN JAMES SCOTT PHILLIPS WATSON DAVIS
PARKER PRICE BENNETT YOUNG GRIFFITHS MITCHELL KELLY COOK CARTER RICHARDSON BAILEY COLLINS BELL
SHAW MURPHY MILLER COX RICHARDS MARSHALL ANDERSON SIMPSON ELLIS ADAMS WILKINSON FOSTER CHAPMAN
POWELL WEBB ROGERS GRAY MASON HUNT CAMPBELL MATTHEWS OWEN PALMER HOLMES MILLS BARNES KNIGHT LLOYD
BUTLER RUSSELL BARKER FISHER STEVENS JENKINS MURRAY DIXON HARVEY GRAHAM PEARSON FLETCHER WALSH
GIBSON HOWARD ANDREWS STEWART ELLIOTT REYNOLDS SAUNDERS PAYNE FOX FORD PEARCE DAY BROOKS WEST
LAWRENCE COLE ATKINSON BRADLEY SPENCER DAWSON BALL BURTON O'BRIEN WATTS ROSE BOOTH PERRY RYAN
GRANT WELLS ARMSTRONG FRANCIS REES HAYES HART HUDSON NEWMAN BARRETT WEBSTER HUNTER GREGORY CARR
LOWE PAGE MARSH RILEY DUNN WOODS PARSONS BERRY STONE REID HOLLAND HAWKINS HARDING PORTER ROBERTSON
NEWTON OLIVER REED KENNEDY WILLIAMSON BIRD GARDNER DEAN LANE COLEMAN O'CONNOR MACDONALD MCDONALD
FRASER MCKENZIE MACLEOD MCGREGOR O'NEILL DOYLE BYRNE MCCARTHY QUINN GALLAGHER DOHERTY FITZGERALD
LYNCH MCLAUGHLIN BRENNAN FLYNN LLEWELLYN PRITCHARD VAUGHAN PROBERT HOWELLS JEFFERIES CRAWFORD
DOUGLAS HENDERSON PATERSON JOHNSTONE SUTHERLAND CAMERON MACKAY ROSS MUNRO KERR HAMILTON-SMITH
ASHWORTH-BROWN ST CLAIR BRAITHWAITE ACKROYD HEPWORTH SUTCLIFFE GREENWOOD HOLROYD CROWTHER LOCKWOOD
PICKERING WHITTAKER BRIGGS OUTHWAITE TEMPLETON FAIRCLOUGH ENTWISTLE HARGREAVES
"""
_SOUTH_ASIAN_MALE = """
MOHAMMED MUHAMMAD ALI AHMED HASSAN IMRAN USMAN BILAL HAMZA ZAIN AYAAN ARJUN RAHUL SANJAY RAJESH
VIKRAM AMIT RAVI SURESH DEEPAK HARPREET GURPREET JASPAL MANJIT KULDEEP SUNIL ANIL TARIQ FAISAL
ADNAN SHAHID ABDUL RAJ KABIR
"""
_SOUTH_ASIAN_FEMALE = """
FATIMA AYESHA AISHA ZARA SANA MARYAM NOOR HUMA SHABANA NASREEN PRIYA ANJALI POOJA NEHA SUNITA
KAVITA MEENA REKHA ASHA JASPREET HARJIT KIRANDEEP MANDEEP SIMRAN AMRIT NISHA DIVYA SHREYA ANANYA
"""
_SOUTH_ASIAN_SURNAMES = """
KHAN PATEL SINGH AHMED HUSSAIN BEGUM ALI KAUR SHAH MAHMOOD IQBAL RAHMAN AKHTAR ISLAM CHOUDHURY MIAH
BIBI SHARMA KUMAR GUPTA MISTRY PAREKH DESAI JOSHI MEHTA CHAUHAN SANDHU GILL DHILLON SIDHU BAINS
GREWAL RAJA QURESHI BUTT MALIK SHEIKH NAZIR ANWAR HAQUE UDDIN CHOWDHURY RASHID
"""
_BLACK_MALE = """
OLUWASEUN OLUWAFEMI ADEBAYO CHINEDU EMEKA KWAME KOFI KWABENA YAW TENDAI TAFADZWA ABDI MOHAMED
IBRAHIM EMMANUEL DESMOND WINSTON DELROY LEROY CLIVE MARCUS TYRONE JERMAINE DWAYNE
"""
_BLACK_FEMALE = """
CHIOMA NGOZI ADAEZE FUNMILAYO FOLAKE ABENA AKOSUA AMA YAA NKECHI RUTENDO HODAN FARHIYA BLESSING
PRECIOUS FAITH JOY PATIENCE MARCIA JUNE SHANICE TIANA CHANTELLE MONIQUE
"""
_BLACK_SURNAMES = """
OKAFOR ADEYEMI OKONKWO MENSAH OWUSU BOATENG ASANTE OLUWOLE ADEBAYO BALOGUN OGUNDIPE NWOSU EZE OBI
MUTASA MOYO NDLOVU CHIKWANHA MOHAMED ABDI WARSAME FARAH OSEI APPIAH ADJEI OYELARAN AKINOLA IWUCHUKWU
"""
_EAST_EUROPEAN_MALE = """
PIOTR KRZYSZTOF TOMASZ PAWEL MICHAL MARCIN ALEKSANDER JAKUB LUKASZ MATEUSZ ANDRZEJ ADRIAN MARIUS
ANDREI IONUT BOGDAN MINDAUGAS TOMAS VYTAUTAS DARIUS JANIS NIKOLAI DMITRI VIKTOR
"""
_EAST_EUROPEAN_FEMALE = """
ANNA KATARZYNA MALGORZATA AGNIESZKA MAGDALENA JOANNA MONIKA EWA ALEKSANDRA NATALIA JUSTYNA IOANA
ELENA ANDREEA MIHAELA RUTA GIEDRE INGA IRINA OKSANA YULIA
"""
_EAST_EUROPEAN_SURNAMES = """
NOWAK KOWALSKI WISNIEWSKI WOJCIK KOWALCZYK KAMINSKI LEWANDOWSKI ZIELINSKI SZYMANSKI WOZNIAK
DABROWSKI KOZLOWSKI JANKOWSKI MAZUR KWIATKOWSKI KRAWCZYK POPESCU POPA IONESCU RADU STAN DUMITRU
KAZLAUSKAS JANKAUSKAS PETRAUSKAS BERZINS KALNINS IVANOV PETROV HORVATH NAGY KOVAC
"""
_EAST_ASIAN_MALE = "WEI JUN MING HAO LEI JIAN CHEN MINH DUC TUAN HUNG KENJI HIROSHI"
_EAST_ASIAN_FEMALE = "MEI LING XIN YAN HUI JING LI HOA LAN THAO LINH YUKI AIKO"
_EAST_ASIAN_SURNAMES = """
WANG LI ZHANG LIU CHEN YANG HUANG ZHAO WU ZHOU CHAN WONG LEUNG CHEUNG NGUYEN TRAN LE PHAM TANAKA
SATO KIM PARK
"""
_MIDDLE_EASTERN_MALE = """
OMAR KHALID YUSUF MUSTAFA ABDULLAH KARIM SAMIR NABIL TAREK WALID REZA ALI HASSAN AHMAD MAHMOUD KAMAL
"""
_MIDDLE_EASTERN_FEMALE = "LAYLA LEILA YASMIN AMIRA HANA RANIA SALMA DALIA NADIA SAMIRA MARIAM FATEMEH SHIRIN"
_MIDDLE_EASTERN_SURNAMES = """
AL-SAYED HADDAD NASSER KHOURY MANSOUR SALEH AZIZ HABIB YOUSEF HAMADI AHMADI HOSSEINI MOHAMMADI
REZAEI KARIMI RAHIMI JAFARI OSMAN ABBAS EL-AMIN
"""
_SOUTH_EUROPEAN_MALE = """
GIUSEPPE FRANCESCO MARCO LUCA ANTONIO GIOVANNI ALESSANDRO JOAO PEDRO MIGUEL CARLOS JOSE ALEJANDRO
NIKOS GIORGOS DIMITRIS MEHMET EMRE CAN
"""
_SOUTH_EUROPEAN_FEMALE = """
MARIA GIULIA CHIARA SOFIA ANA BEATRIZ INES CARMEN LUCIA ELENI DESPINA AYSE ELIF ZEYNEP FATMA
"""
_SOUTH_EUROPEAN_SURNAMES = """
ROSSI RUSSO FERRARI ESPOSITO BIANCHI ROMANO COLOMBO RICCI SILVA SANTOS FERREIRA PEREIRA OLIVEIRA
COSTA RODRIGUES GARCIA MARTINEZ LOPEZ GONZALEZ FERNANDEZ PAPADOPOULOS GEORGIOU YILMAZ KAYA DEMIR
CELIK SAHIN
"""


def _words(text: str) -> list[str]:
    # "ST CLAIR" is one surname: lists use single spaces between names except inside that one
    return [w.replace("_", " ") for w in text.replace("ST CLAIR", "ST_CLAIR").split()]


@dataclass(frozen=True)
class _Group:
    name: str
    weight: float
    male: list[str]
    female: list[str]
    surnames: list[str]
    british_forename_share: float  # share of the group's people given a British/Irish forename
    british_surname_share: float
    middle_name_rate: float
    ethnicity: dict[str, float]


_GROUPS = (
    _Group("british_irish", 0.76, _words(_BRITISH_MALE), _words(_BRITISH_FEMALE), _words(_BRITISH_SURNAMES),
           1.0, 1.0, 0.17, {"A": 0.88, "B": 0.04, "C": 0.02, "D": 0.005, "E": 0.005, "F": 0.005, "G": 0.005,
                            "Z": 0.04}),
    _Group("south_asian", 0.08, _words(_SOUTH_ASIAN_MALE), _words(_SOUTH_ASIAN_FEMALE),
           _words(_SOUTH_ASIAN_SURNAMES), 0.05, 0.0, 0.08,
           {"H": 0.44, "J": 0.30, "K": 0.12, "L": 0.08, "F": 0.02, "Z": 0.04}),
    _Group("east_european", 0.05, _words(_EAST_EUROPEAN_MALE), _words(_EAST_EUROPEAN_FEMALE),
           _words(_EAST_EUROPEAN_SURNAMES), 0.05, 0.02, 0.05, {"C": 0.92, "A": 0.02, "Z": 0.06}),
    _Group("black", 0.04, _words(_BLACK_MALE), _words(_BLACK_FEMALE), _words(_BLACK_SURNAMES),
           0.50, 0.45, 0.12, {"N": 0.52, "M": 0.30, "P": 0.07, "D": 0.04, "E": 0.03, "Z": 0.04}),
    _Group("middle_eastern", 0.025, _words(_MIDDLE_EASTERN_MALE), _words(_MIDDLE_EASTERN_FEMALE),
           _words(_MIDDLE_EASTERN_SURNAMES), 0.05, 0.02, 0.05, {"S": 0.60, "L": 0.15, "C": 0.15, "Z": 0.10}),
    _Group("south_european", 0.025, _words(_SOUTH_EUROPEAN_MALE), _words(_SOUTH_EUROPEAN_FEMALE),
           _words(_SOUTH_EUROPEAN_SURNAMES), 0.10, 0.03, 0.10, {"C": 0.90, "A": 0.04, "Z": 0.06}),
    _Group("east_asian", 0.02, _words(_EAST_ASIAN_MALE), _words(_EAST_ASIAN_FEMALE),
           _words(_EAST_ASIAN_SURNAMES), 0.25, 0.0, 0.05, {"R": 0.70, "L": 0.20, "S": 0.04, "Z": 0.06}),
)
_ETHNICITY_CODES = ["A", "B", "C", "D", "E", "F", "G", "H", "J", "K", "L", "M", "N", "P", "R", "S", "Z"]
_FORENAME_ZIPF = (0.85, 5.0)  # (s, q): weight 1/(rank + q)^s over a list in popularity order
_SURNAME_ZIPF = (0.75, 6.0)

# Nicknames and short forms, by formal forename (hand-written).
_NICKNAMES = {
    "ROBERT": "BOB ROB BOBBY ROBBIE", "WILLIAM": "BILL WILL BILLY", "JAMES": "JIM JIMMY JAMIE",
    "JOHN": "JACK JOHNNY", "RICHARD": "RICK DICK RICHIE", "THOMAS": "TOM TOMMY", "MICHAEL": "MIKE MICK MICKY",
    "CHRISTOPHER": "CHRIS KIT", "MATTHEW": "MATT", "DANIEL": "DAN DANNY", "JOSEPH": "JOE JOEY",
    "ANTHONY": "TONY ANT", "EDWARD": "ED EDDIE TED NED", "ALEXANDER": "ALEX SANDY", "BENJAMIN": "BEN BENNY",
    "SAMUEL": "SAM SAMMY", "NICHOLAS": "NICK NICKY", "STEPHEN": "STEVE", "PETER": "PETE", "DAVID": "DAVE DAVY",
    "ANDREW": "ANDY DREW", "JONATHAN": "JON JONNY", "TIMOTHY": "TIM", "PATRICK": "PAT PADDY",
    "GEOFFREY": "GEOFF", "KENNETH": "KEN KENNY", "RAYMOND": "RAY", "FREDERICK": "FRED FREDDIE",
    "HENRY": "HARRY HAL", "CHARLES": "CHARLIE CHAS", "ALFRED": "ALF ALFIE", "GERALD": "GERRY",
    "LEONARD": "LEN LENNY", "TERENCE": "TERRY TEL", "DOUGLAS": "DOUG DOUGIE", "GREGORY": "GREG",
    "PHILIP": "PHIL PIP", "OLIVER": "OLLIE", "FRANCIS": "FRANK", "NATHAN": "NATE", "JOSHUA": "JOSH",
    "ARCHIE": "ARCH", "MALCOLM": "MAL", "NIGEL": "NIGE", "GRAHAM": "GRAY", "KIERAN": "KIER",
    "ELIZABETH": "LIZ BETH LIZZIE BETTY ELIZA", "MARGARET": "MAGGIE PEGGY MEG", "KATHERINE": "KATE KATIE KATHY",
    "CATHERINE": "CATH CATHY KATE", "JENNIFER": "JEN JENNY", "REBECCA": "BECKY BECCA", "SUSAN": "SUE SUSIE",
    "PATRICIA": "PAT TRISH PATSY", "DEBORAH": "DEBBIE DEB", "CHRISTINE": "CHRIS CHRISSIE",
    "VICTORIA": "VICKY TORI", "ALEXANDRA": "ALEX LEXI", "SAMANTHA": "SAM SAMMIE", "JACQUELINE": "JACKIE",
    "ABIGAIL": "ABBIE ABBY", "JESSICA": "JESS JESSIE", "ELEANOR": "ELLIE NELL", "GEORGINA": "GEORGIE GINA",
    "CHARLOTTE": "LOTTIE CHARLIE", "AMELIA": "MILLIE AMY", "ISABELLA": "BELLA IZZY", "ISABEL": "IZZY ISSY",
    "DOROTHY": "DOT DOTTIE", "FRANCESCA": "FRAN FRANKIE", "JOSEPHINE": "JO JOSIE", "NATALIE": "NAT",
    "ANNE": "ANNIE", "SARAH": "SALLY SAL", "MARY": "MOLLY POLLY", "HELEN": "NELL", "BARBARA": "BARB BABS",
    "THERESA": "TESS TERRI", "TERESA": "TESS", "KIMBERLEY": "KIM", "GILLIAN": "GILL JILL", "PAULINE": "POLLY",
    "LOUISE": "LOU", "NICOLA": "NICKY", "AMANDA": "MANDY", "JOANNE": "JO", "FLORENCE": "FLO FLOSSIE",
    "MATILDA": "TILLY", "HARRIET": "HATTIE", "BEATRICE": "BEA TRIXIE", "IMOGEN": "IMMY", "EMILY": "EM MILLIE",
    "MOHAMMED": "MOHAMMAD MOHAMED MO", "MUHAMMAD": "MOHAMMED MO", "ABDULLAH": "ABDUL", "ALEKSANDER": "OLEK",
    "KATARZYNA": "KASIA", "MALGORZATA": "GOSIA", "AGNIESZKA": "AGA", "MAGDALENA": "MAGDA", "JAKUB": "KUBA",
    "GIUSEPPE": "BEPPE PEPPE", "FRANCESCO": "FRANCO", "ALEJANDRO": "ALEX", "ALESSANDRO": "ALEX SANDRO",
    "OLUWASEUN": "SEUN", "OLUWAFEMI": "FEMI", "ADEBAYO": "BAYO", "CHINEDU": "CHI", "DIMITRIS": "JIM",
    "GIORGOS": "GEORGE", "ALEKSANDRA": "OLA", "YUSUF": "JOE", "IBRAHIM": "IBBY",
}

# Outward codes by town (real districts; inward codes are random).
_TOWNS = {
    "Leeds": "LS1 LS2 LS4 LS6 LS7 LS8 LS9 LS11 LS12 LS13 LS15 LS16 LS17 LS28",
    "Bradford": "BD1 BD3 BD5 BD7 BD8 BD9 BD18",
    "Manchester": "M1 M4 M8 M11 M13 M14 M16 M19 M20 M21 M22 M40",
    "Birmingham": "B5 B6 B8 B10 B11 B12 B13 B16 B17 B23 B29 B30",
    "London": "E1 E2 E5 E8 E17 N1 N4 N7 N16 N17 NW1 NW5 NW10 SE1 SE5 SE15 SE18 SW2 SW9 SW11 SW18 W2 W3 "
              "W12 EC1V WC1N E1W SE22",
    "Bristol": "BS1 BS2 BS3 BS5 BS6 BS7 BS16",
    "Cardiff": "CF5 CF10 CF11 CF14 CF23 CF24",
    "Newcastle upon Tyne": "NE1 NE2 NE4 NE6 NE15",
    "Liverpool": "L1 L4 L6 L8 L15 L17 L18",
    "Sheffield": "S1 S2 S6 S7 S10 S11",
    "Nottingham": "NG1 NG3 NG5 NG7 NG9",
    "Leicester": "LE1 LE2 LE3 LE4 LE5",
    "Glasgow": "G1 G3 G11 G12 G31 G41 G42",
    "Edinburgh": "EH1 EH3 EH6 EH7 EH11 EH16",
    "Belfast": "BT1 BT5 BT7 BT9 BT12",
    "Norwich": "NR1 NR2 NR3 NR4",
    "Plymouth": "PL1 PL2 PL4 PL6",
    "York": "YO1 YO10 YO24 YO31",
    "Hull": "HU1 HU3 HU5 HU8",
    "Oxford": "OX1 OX2 OX3 OX4",
    "Cambridge": "CB1 CB2 CB4",
    "Southampton": "SO14 SO15 SO16 SO17",
    "Brighton": "BN1 BN2 BN3",
    "Swansea": "SA1 SA2 SA5",
    "Aberdeen": "AB10 AB11 AB24",
    "Inverness": "IV2 IV3",
}
_TOWN_WEIGHT = {"London": 3.0, "Birmingham": 1.5, "Manchester": 1.5, "Leeds": 1.3, "Glasgow": 1.2}
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"  # letters used in inward codes

_STREET_NAMES = """
Acacia Albert Alexandra Ash Beech Birch Blenheim Bridge Brook Castle Cedar Chapel Chestnut Church
Clarence Cromwell Derwent Elm Fairfield Farm Ferndale Forest Gladstone Grange Green Grosvenor Hawthorn
Hazel Heath High Highfield Hill Holly Kings Kingsway Lancaster Laurel Lime Linden Manor Maple Market
Marlborough Meadow Mill Milton Moor Mount Nelson New North Oak Orchard Park Poplar Princes Priory
Queens Railway Raven Rectory Regent Riverside Rose Sandringham School Shelley South Spring Stanley
Station Sycamore Tennyson Trinity Union Vicarage Victoria Vine Water Well West Westfield Willow
Windsor Woodland York Yew Beaconsfield Belmont Burns Dale Ellesmere Falcon Gordon Granby Harewood
Hollin Ivy Juniper Kelso Larch Lynton Mayfield Nursery Osborne Peel Pembroke Quarry Rowan Salisbury
Thornhill Waverley
""".split()
# (full, abbreviation, weight)
_STREET_TYPES = [
    ("Road", "RD", 30), ("Street", "ST", 18), ("Avenue", "AVE", 9), ("Lane", "LN", 8), ("Close", "CL", 7),
    ("Drive", "DR", 6), ("Crescent", "CRES", 4), ("Grove", "GR", 4), ("Way", "WY", 3), ("Terrace", "TERR", 3),
    ("Gardens", "GDNS", 2), ("Place", "PL", 2), ("Court", "CT", 2), ("Walk", "WLK", 1), ("View", "VW", 1),
    ("Mews", "MWS", 1), ("Square", "SQ", 1), ("Rise", "RI", 1),
]

# ------------------------------------------------------------------------------------------------
# Small helpers
# ------------------------------------------------------------------------------------------------


def _zipf(n: int, s: float, q: float) -> np.ndarray:
    w = 1.0 / (np.arange(n) + 1.0 + q) ** s
    return w / w.sum()


def _distinct(x: np.ndarray) -> np.ndarray:
    """Sorted distinct values (a plain sort: faster here than numpy's hash-based unique)."""
    x = np.sort(x)
    return x[np.concatenate([[True], x[1:] != x[:-1]])]


def _unique_ints(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    """n distinct integers in [low, high), in random order."""
    got = np.empty(0, np.int64)
    while len(got) < n:
        draw = rng.integers(low, high, size=int((n - len(got)) * 1.05) + 64)
        got = _distinct(np.concatenate([got, draw]))
    return rng.permutation(got)[:n]


def mod11_check_digit(prefix: np.ndarray) -> np.ndarray:
    """Modulus 11 check digit of 9-digit prefixes (10 means: no valid number with this prefix)."""
    prefix = np.asarray(prefix, np.int64)
    total = np.zeros(prefix.shape, np.int64)
    for i in range(9):
        total += (prefix // 10 ** (8 - i) % 10) * (10 - i)
    check = 11 - total % 11
    return np.where(check == 11, 0, check)


def _nhs_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """n distinct valid NHS numbers starting 4, 6 or 7, in random order."""
    got = np.empty(0, np.int64)
    while len(got) < n:
        x = rng.integers(0, 300_000_000, size=int((n - len(got)) * 1.15) + 64)
        prefix = np.where(x < 100_000_000, 400_000_000 + x, 500_000_000 + x)  # 4xx or 6xx-7xx
        check = mod11_check_digit(prefix)
        ok = check < 10
        got = _distinct(np.concatenate([got, prefix[ok] * 10 + check[ok]]))
    return rng.permutation(got)[:n]


def _nhs_typos(rng: np.random.Generator, nums: np.ndarray) -> np.ndarray:
    """One-digit keying errors: a substituted digit (80 %) or two adjacent digits transposed (20 %)."""
    n = len(nums)
    pos = rng.integers(0, 10, n)
    place = 10 ** (9 - pos)
    digit = nums // place % 10
    substituted = nums + (((digit + rng.integers(1, 10, n)) % 10) - digit) * place
    pos2 = np.minimum(pos, 8)
    p1, p2 = 10 ** (9 - pos2), 10 ** (8 - pos2)
    d1, d2 = nums // p1 % 10, nums // p2 % 10
    transposed = nums + (d2 - d1) * p1 + (d1 - d2) * p2
    use_transposed = (rng.random(n) < 0.2) & (d1 != d2)
    return np.where(use_transposed, transposed, substituted)


def _strs(values: list[str]) -> pa.Array:
    return pa.array(values, pa.string())


def _take(values: pa.Array, idx: np.ndarray) -> pa.Array:
    return values.take(pa.array(idx))


def _int_str(x: np.ndarray, width: int = 0) -> pa.Array:
    s = pc.cast(pa.array(np.asarray(x, np.int64)), pa.string())
    return pc.utf8_lpad(s, width=width, padding="0") if width else s


def _join(*parts, sep: str = "") -> pa.Array:
    return pc.binary_join_element_wise(*parts, sep)


def _where(mask: np.ndarray, a, b) -> pa.Array:
    return pc.if_else(pa.array(mask), a, b)


def _blank(rng: np.random.Generator, arr: pa.Array, mask: np.ndarray, empty_share: float) -> pa.Array:
    """Missing values where mask: empty strings for a share of them, nulls for the rest."""
    empty = mask & (rng.random(len(mask)) < empty_share)
    arr = _where(empty, pa.scalar("", pa.string()), arr)
    return _where(mask & ~empty, pa.scalar(None, pa.string()), arr)


def _bytes_matrix(words: np.ndarray, extra: int = 1) -> np.ndarray:
    b = np.asarray(words, dtype=object).astype("S")
    width = b.dtype.itemsize + extra
    return b.astype(f"S{width}").view(np.uint8).reshape(len(b), width).copy()


def _matrix_strings(m: np.ndarray) -> pa.Array:
    s = m.view(f"S{m.shape[1]}").ravel()
    return pa.array(np.char.decode(s, "ascii"), pa.string())


_KEY_ROWS = ("QWERTYUIOP", "ASDFGHJKL", "ZXCVBNM")
_KEY_SHIFT = (0.0, 0.25, 0.75)


def _keyboard_neighbours() -> tuple[np.ndarray, np.ndarray]:
    where = {ch: (r, c + _KEY_SHIFT[r]) for r, row in enumerate(_KEY_ROWS) for c, ch in enumerate(row)}
    table = np.zeros((256, 8), np.uint8)
    count = np.zeros(256, np.int64)
    for ch, (r, x) in where.items():
        near = [o for o, (r2, x2) in where.items()
                if o != ch and ((r2 == r and abs(x2 - x) == 1) or (abs(r2 - r) == 1 and abs(x2 - x) <= 0.75))]
        count[ord(ch)] = len(near)
        table[ord(ch), : len(near)] = [ord(o) for o in near]
    return table, count


_NEAR_TABLE, _NEAR_COUNT = _keyboard_neighbours()


def _neighbour(rng: np.random.Generator, chars: np.ndarray) -> np.ndarray:
    """A keyboard neighbour of each upper-case letter; a random letter for anything else."""
    k = _NEAR_COUNT[chars]
    pick = np.floor(rng.random(len(chars)) * np.maximum(k, 1)).astype(np.int64)
    near = _NEAR_TABLE[chars, pick]
    return np.where(k > 0, near, rng.integers(65, 91, len(chars))).astype(np.uint8)


def _typo_words(rng: np.random.Generator, words: np.ndarray) -> pa.Array:
    """One typing error per word: neighbour substitution, deletion, insertion or transposition."""
    n = len(words)
    m = _bytes_matrix(words)
    out = m.copy()
    rows = np.arange(n)
    length = (m != 0).sum(1)
    op = rng.choice(4, n, p=[0.40, 0.25, 0.20, 0.15])  # 0 sub, 1 delete, 2 insert, 3 transpose
    op = np.where((length < 3) & (op != 2), 0, op)
    u = rng.random(n)
    first = rng.random(n) < 0.08
    pos = np.where(first, 0, 1 + np.floor(u * np.maximum(length - 1, 1))).astype(np.int64)
    pos = np.minimum(pos, np.maximum(length - 1, 0))
    pos = np.where(op == 3, np.minimum(pos, length - 2), pos)
    pos = np.where(op == 2, np.where(first, 0, 1 + np.floor(u * length)), pos).astype(np.int64)
    pos = np.clip(pos, 0, m.shape[1] - 1)
    same = (op == 3) & (m[rows, np.minimum(pos + 1, m.shape[1] - 1)] == m[rows, pos])
    op = np.where(same, 0, op)
    cols = np.arange(m.shape[1])[None, :]
    zero = np.zeros((n, 1), np.uint8)

    sub = op == 0
    out[rows[sub], pos[sub]] = _neighbour(rng, m[rows[sub], pos[sub]])

    dele = op == 1
    left = np.concatenate([m[:, 1:], zero], axis=1)
    out[dele] = np.where(cols < pos[:, None], m, left)[dele]

    ins = op == 2
    src = m[rows, np.maximum(pos - 1, 0)]
    new = np.where(rng.random(n) < 0.5, src, _neighbour(rng, src))
    right = np.concatenate([zero, m[:, :-1]], axis=1)
    ins_row = np.where(cols < pos[:, None], m, np.where(cols == pos[:, None], new[:, None], right))
    out[ins] = ins_row[ins]

    tr = op == 3
    out[rows[tr], pos[tr]] = m[rows[tr], pos[tr] + 1]
    out[rows[tr], pos[tr] + 1] = m[rows[tr], pos[tr]]
    return _matrix_strings(out)


def _apply_typos(rng: np.random.Generator, arr: pa.Array, mask: np.ndarray) -> pa.Array:
    mask = mask & pc.is_valid(arr).to_numpy(zero_copy_only=False)
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return arr
    words = _take(arr, idx).to_numpy(zero_copy_only=False)
    return pc.replace_with_mask(arr, pa.array(mask), _typo_words(rng, words))


def _postcode_typos(rng: np.random.Generator, arr: pa.Array, mask: np.ndarray) -> pa.Array:
    """Change one inward character: the digit to another digit, or a letter to another inward letter."""
    idx = np.flatnonzero(mask)
    if len(idx) == 0:
        return arr
    m = _bytes_matrix(_take(arr, idx).to_numpy(zero_copy_only=False), extra=0)
    n = len(idx)
    rows = np.arange(n)
    length = (m != 0).sum(1)
    back = rng.integers(1, 4, n)  # 1, 2: letters; 3: digit
    col = length - back
    old = m[rows, col]
    letters = np.frombuffer(_INWARD_LETTERS.encode(), np.uint8)
    new_letter = letters[rng.integers(0, len(letters), n)]
    new_letter = np.where(new_letter == old, letters[(np.searchsorted(letters, old) + 1) % len(letters)], new_letter)
    new_digit = (old - 48 + rng.integers(1, 10, n)) % 10 + 48
    m[rows, col] = np.where(back == 3, new_digit, new_letter).astype(np.uint8)
    return pc.replace_with_mask(arr, pa.array(mask), _matrix_strings(m))


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = days.astype("datetime64[D]")
    month_start = d.astype("datetime64[M]")
    year = d.astype("datetime64[Y]").astype(np.int64) + 1970
    month = month_start.astype(np.int64) % 12 + 1
    day = (d - month_start).astype(np.int64) + 1
    return year, month, day


def _is_leap(y: np.ndarray) -> np.ndarray:
    return (y % 4 == 0) & ((y % 100 != 0) | (y % 400 == 0))


# ------------------------------------------------------------------------------------------------
# Name tables (global, de-duplicated; groups index into them)
# ------------------------------------------------------------------------------------------------


@dataclass
class _NameTables:
    forenames: list[str]
    surnames: list[str]
    male: list[tuple[np.ndarray, np.ndarray]]      # per group: (codes, probabilities)
    female: list[tuple[np.ndarray, np.ndarray]]
    surname: list[tuple[np.ndarray, np.ndarray]]
    nick_offset: np.ndarray                        # per forename code: start in nick_values
    nick_count: np.ndarray
    nick_values: list[str]


def _name_tables() -> _NameTables:
    fore: dict[str, int] = {}
    sur: dict[str, int] = {}

    def codes(names: list[str], table: dict[str, int]) -> np.ndarray:
        return np.array([table.setdefault(x, len(table)) for x in names], np.int64)

    male, female, surname = [], [], []
    for g in _GROUPS:
        male.append((codes(g.male, fore), _zipf(len(g.male), *_FORENAME_ZIPF)))
        female.append((codes(g.female, fore), _zipf(len(g.female), *_FORENAME_ZIPF)))
        surname.append((codes(g.surnames, sur), _zipf(len(g.surnames), *_SURNAME_ZIPF)))
    forenames = list(fore)
    offset = np.zeros(len(forenames), np.int64)
    count = np.zeros(len(forenames), np.int64)
    values: list[str] = []
    for code, name in enumerate(forenames):
        nicks = _NICKNAMES.get(name, "").split()
        offset[code], count[code] = len(values), len(nicks)
        values.extend(nicks)
    return _NameTables(forenames, list(sur), male, female, surname, offset, count, values)


# ------------------------------------------------------------------------------------------------
# Population
# ------------------------------------------------------------------------------------------------


@dataclass
class AltPopulation:
    sources: dict[str, pd.DataFrame]
    truth: pd.DataFrame
    # clean person-level values, for tests and diagnostics (not written by write_parquet)
    people: pd.DataFrame = field(repr=False)
    seed: int = 0


def _multiplicity(rng: np.random.Generator, n: int, probs: tuple[float, float, float]) -> np.ndarray:
    u = rng.random(n)
    return (1 + (u >= probs[0]) + (u >= probs[0] + probs[1])).astype(np.int64)


def _fill_to(mult: np.ndarray, target: int) -> tuple[int, np.ndarray]:
    """The shortest prefix of people whose record counts sum to target (the last one trimmed)."""
    cs = np.cumsum(mult)
    k = int(np.searchsorted(cs, target))
    m = mult[: k + 1].copy()
    m[-1] -= cs[k] - target
    return k + 1, m


def _records(rng: np.random.Generator, persons: np.ndarray, mult: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(person, duplicate index) per record, rows in random order."""
    rp = np.repeat(persons, mult)
    rk = np.arange(len(rp)) - np.repeat(np.cumsum(mult) - mult, mult)
    order = rng.permutation(len(rp))
    return rp[order], rk[order]


def _draw_codes(rng: np.random.Generator, group: np.ndarray, tables: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    out = np.zeros(len(group), np.int64)
    for g, (codes, p) in enumerate(tables):
        sel = np.flatnonzero(group == g)
        if len(sel):
            out[sel] = codes[rng.choice(len(codes), len(sel), p=p)]
    return out


def _forenames(rng, names: _NameTables, group: np.ndarray, male: np.ndarray) -> np.ndarray:
    brit_share = np.array([g.british_forename_share for g in _GROUPS])
    name_group = np.where(rng.random(len(group)) < brit_share[group], 0, group)
    m = _draw_codes(rng, name_group, names.male)
    f = _draw_codes(rng, name_group, names.female)
    return np.where(male, m, f)


def _surnames(rng, names: _NameTables, group: np.ndarray) -> np.ndarray:
    brit_share = np.array([g.british_surname_share for g in _GROUPS])
    name_group = np.where(rng.random(len(group)) < brit_share[group], 0, group)
    return _draw_codes(rng, name_group, names.surname)


@dataclass
class _World:
    names: _NameTables
    # people
    hh: np.ndarray
    male: np.ndarray
    dob: np.ndarray            # days since 1970-01-01
    given: np.ndarray
    middle: np.ndarray         # -1: none
    surname: np.ndarray
    alt_surname: np.ndarray    # -1: none
    alt_source: np.ndarray     # 0 registry, 1 community
    nhs: np.ndarray
    ethnicity: np.ndarray
    in_both: np.ndarray
    person_id: pa.Array
    # households
    unit: np.ndarray
    number: np.ndarray
    uprn: np.ndarray
    mover: np.ndarray
    move_source: np.ndarray
    old_unit: np.ndarray
    old_number: np.ndarray
    old_uprn: np.ndarray
    # postcode units
    unit_postcode: pa.Array    # "LS6 2AB"
    unit_street: np.ndarray
    unit_type: np.ndarray
    unit_town: np.ndarray


def _households(rng: np.random.Generator, people: int) -> tuple[np.ndarray, np.ndarray, int]:
    sizes = np.empty(0, np.int64)
    while sizes.sum() < people:
        sizes = np.concatenate([sizes, rng.choice(5, people // 2 + 16, p=HOUSEHOLD_SIZES) + 1])
    h, sizes = _fill_to(sizes, people)
    order = rng.permutation(people)
    hh = np.empty(people, np.int64)
    rank = np.empty(people, np.int64)
    hh[order] = np.repeat(np.arange(h), sizes)
    rank[order] = np.arange(people) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return hh, rank, h


def _build_world(rng: np.random.Generator, people: int, in_both: np.ndarray) -> _World:
    names = _name_tables()
    hh, member_rank, n_hh = _households(rng, people)

    # postcode units: a street and a unique inward code within the outward district
    outward = [(o, town) for town, codes in _TOWNS.items() for o in codes.split()]
    towns = list(_TOWNS)
    district_town = np.array([towns.index(t) for _, t in outward])
    dw = rng.gamma(2.0, 1.0, len(outward)) * np.array([_TOWN_WEIGHT.get(t, 1.0) for _, t in outward])
    n_units = max(1, -(-n_hh // HOUSEHOLDS_PER_UNIT))
    unit_district = rng.choice(len(outward), n_units, p=dw / dw.sum())
    by_district = np.argsort(unit_district, kind="stable")
    d_count = np.bincount(unit_district, minlength=len(outward))
    d_start = np.cumsum(d_count) - d_count
    rank_in_district = np.empty(n_units, np.int64)
    rank_in_district[by_district] = np.arange(n_units) - np.repeat(d_start, d_count)
    step = 2 * rng.integers(0, 2000, len(outward)) + 1
    step = np.where(step % 5 == 0, step + 2, step)  # coprime with 4000
    inward = (step[unit_district] * rank_in_district + rng.integers(0, 4000, len(outward))[unit_district]) % 4000
    letters = _strs(list(_INWARD_LETTERS))
    inward_s = _join(_int_str(inward // 400), _take(letters, inward % 400 // 20), _take(letters, inward % 20))
    unit_postcode = _join(_take(_strs([o for o, _ in outward]), unit_district), inward_s, sep=" ")
    unit_street = rng.choice(len(_STREET_NAMES), n_units, p=_zipf(len(_STREET_NAMES), 0.5, 5.0))
    tw = np.array([w for *_, w in _STREET_TYPES], float)
    unit_type = rng.choice(len(_STREET_TYPES), n_units, p=tw / tw.sum())
    unit_town = district_town[unit_district]

    # households: a unit, a house number unique within the unit, a UPRN; 15 % have moved
    unit = rng.integers(0, n_units, n_hh)
    by_unit = np.argsort(unit, kind="stable")
    u_count = np.bincount(unit, minlength=n_units)
    rank_in_unit = np.empty(n_hh, np.int64)
    rank_in_unit[by_unit] = np.arange(n_hh) - np.repeat(np.cumsum(u_count) - u_count, u_count)
    first_number = rng.integers(1, 60, n_units)
    number_step = np.where(rng.random(n_units) < 0.6, 2, 1)
    number = first_number[unit] + rank_in_unit * number_step[unit]
    mover = rng.random(n_hh) < MOVER_HOUSEHOLDS
    uprns = _unique_ints(rng, n_hh + int(mover.sum()), 10**11, 10**12)
    uprn = uprns[:n_hh]
    nearby = rng.random(n_hh) < MOVE_NEARBY
    d = unit_district[unit]
    near_unit = by_district[d_start[d] + np.floor(rng.random(n_hh) * d_count[d]).astype(np.int64)]
    far_unit = rng.integers(0, n_units, n_hh)
    old_unit = np.where(mover, np.where(nearby, near_unit, far_unit), -1)
    old_number = np.where(mover, rng.integers(1, 200, n_hh), -1)
    old_uprn = np.full(n_hh, -1, np.int64)
    old_uprn[mover] = uprns[n_hh:]
    move_source = rng.integers(0, 2, n_hh)

    # people
    gw = np.array([g.weight for g in _GROUPS])
    hh_group = rng.choice(len(_GROUPS), n_hh, p=gw / gw.sum())
    group = np.where(rng.random(people) < OWN_GROUP_IN_HOUSEHOLD, hh_group[hh],
                     rng.choice(len(_GROUPS), people, p=gw / gw.sum()))
    male = rng.random(people) < 0.49
    ages = np.arange(101)
    aw = np.where(ages < 55, 1.0, np.exp(-0.5 * ((ages - 55) / 17.0) ** 2))
    age = rng.choice(101, people, p=aw / aw.sum())
    head = (member_rank == 0) & (age < 18)
    age = np.where(head, 18 + rng.choice(83, people, p=aw[18:] / aw[18:].sum()), age)
    ref = np.datetime64(REFERENCE_DATE).astype(np.int64)
    dob = ref - np.floor((age + rng.random(people)) * 365.25).astype(np.int64) - 1

    given = _forenames(rng, names, group, male)
    mid_rate = np.array([g.middle_name_rate for g in _GROUPS])
    middle = _forenames(rng, names, group, male)
    middle = np.where(middle == given, _forenames(rng, names, group, male), middle)
    middle = np.where((rng.random(people) < mid_rate[group]) & (middle != given), middle, -1)
    hh_surname = _surnames(rng, names, hh_group)
    surname = np.where(rng.random(people) < HOUSEHOLD_SURNAME, hh_surname[hh], _surnames(rng, names, group))
    alt = _surnames(rng, names, group)
    married = (~male) & (age >= 18) & (rng.random(people) < MARRIED_NAME_WOMEN) & (alt != surname)
    alt_surname = np.where(married, alt, -1)
    alt_source = rng.integers(0, 2, people)

    nhs = _nhs_numbers(rng, people)
    ethnicity = np.zeros(people, np.int64)
    for g, spec in enumerate(_GROUPS):
        sel = np.flatnonzero(group == g)
        codes = np.array([_ETHNICITY_CODES.index(c) for c in spec.ethnicity])
        p = np.array(list(spec.ethnicity.values()))
        ethnicity[sel] = codes[rng.choice(len(codes), len(sel), p=p / p.sum())]
    person_id = _join("P", _int_str(_unique_ints(rng, people, 0, 10**9), 9))

    return _World(names, hh, male, dob, given, middle, surname, alt_surname, alt_source, nhs, ethnicity,
                  in_both, person_id, unit, number, uprn, mover, move_source, old_unit, old_number, old_uprn,
                  unit_postcode, unit_street, unit_type, unit_town)


# ------------------------------------------------------------------------------------------------
# Records
# ------------------------------------------------------------------------------------------------


class _Rec:
    """One source's records: the person behind each row and what the row shows before formatting."""

    def __init__(self, rng: np.random.Generator, w: _World, source: int, rp: np.ndarray, rk: np.ndarray):
        self.rng, self.w, self.s, self.rp, self.rk = rng, w, source, rp, rk
        self.n = len(rp)

    def rate(self, name: str) -> np.ndarray:
        return self.rng.random(self.n) < RATES[name][self.s]

    def variant(self, flag: np.ndarray, variant_source: np.ndarray) -> np.ndarray:
        """Records that show a person's variant (previous address, former surname)."""
        rp, rk = self.rp, self.rk
        extra = (rk >= 1) & (self.rng.random(self.n) < 0.25)
        where = np.where(self.w.in_both[rp], (variant_source == self.s) | extra, rk >= 1)
        return flag & where

    def forename(self, with_middle: np.ndarray) -> pa.Array:
        w, rng = self.w, self.rng
        names = w.names
        code = w.given[self.rp]
        forenames = _strs(names.forenames)
        out = _take(forenames, code)
        count = names.nick_count[code]
        nick = (count > 0) & self.rate("nickname")
        idx = np.flatnonzero(nick)
        pick = names.nick_offset[code[idx]] + np.floor(rng.random(len(idx)) * count[idx]).astype(np.int64)
        if len(idx):
            out = pc.replace_with_mask(out, pa.array(nick), _take(_strs(names.nick_values), pick))
        mid = w.middle[self.rp]
        has_mid = mid >= 0
        as_forename = has_mid & ~nick & self.rate("middle_as_forename")
        mid_s = _take(forenames, np.maximum(mid, 0))
        out = _where(as_forename, mid_s, out)
        shown = has_mid & ~nick & ~as_forename & with_middle
        out = _where(shown, _join(out, mid_s, sep=" "), out)
        return _apply_typos(rng, out, self.rate("forename_typo"))

    def surname(self) -> pa.Array:
        w = self.w
        code = w.surname[self.rp]
        alt = w.alt_surname[self.rp]
        former = self.variant(alt >= 0, w.alt_source[self.rp])
        out = _take(_strs(w.names.surnames), np.where(former, alt, code))
        return _apply_typos(self.rng, out, self.rate("surname_typo"))

    def dob(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        rng, n = self.rng, self.n
        y, m, d = _ymd(self.w.dob[self.rp])
        swap = (d <= 12) & (d != m) & self.rate("dob_day_month_swap")
        m, d = np.where(swap, d, m), np.where(swap, m, d)
        year_off = self.rate("dob_year_off")
        y = np.where(year_off, y + np.where(rng.random(n) < 0.5, -1, 1), y)
        d = np.where((m == 2) & (d == 29) & ~_is_leap(y), 28, d)
        day_off = self.rate("dob_day_off")
        d = np.where(day_off, np.where((d >= 28) | ((rng.random(n) < 0.5) & (d > 1)), d - 1, d + 1), d)
        placeholder = self.rate("dob_placeholder")
        y, m, d = np.where(placeholder, 1900, y), np.where(placeholder, 1, m), np.where(placeholder, 1, d)
        return y, m, d, swap

    def address(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(unit, house number, uprn) per record, the previous address for movers' variant records."""
        w = self.w
        h = w.hh[self.rp]
        moved = self.variant(w.mover[h], w.move_source[h])
        unit = np.where(moved, w.old_unit[h], w.unit[h])
        number = np.where(moved, w.old_number[h], w.number[h])
        uprn = np.where(moved, w.old_uprn[h], w.uprn[h])
        wrong = self.rate("house_number_wrong")
        delta = self.rng.choice(np.array([-10, -2, -1, 1, 2, 10]), self.n)
        number = np.where(wrong, np.abs(number + delta) + (number + delta == 0), number)
        return unit, number, uprn

    def nhs(self) -> tuple[np.ndarray, np.ndarray]:
        nums = self.w.nhs[self.rp]
        typo = self.rate("nhs_typo")
        nums = nums.copy()
        nums[typo] = _nhs_typos(self.rng, nums[typo])
        return nums, typo

    def whitespace(self, arr: pa.Array) -> pa.Array:
        noisy = self.rate("name_whitespace")
        lead = self.rng.random(self.n) < 0.5
        padded = _where(lead, _join(" ", arr), _join(arr, " "))
        return _where(noisy, padded, arr)


def _registry(rng: np.random.Generator, w: _World, rp: np.ndarray, rk: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    r = _Rec(rng, w, 0, rp, rk)
    n = r.n
    reg_id = _join("REG", _int_str(_unique_ints(rng, n, 0, 10**9), 9))

    nums, _ = r.nhs()
    nhs_no = _blank(rng, _int_str(nums, 10), r.rate("nhs_missing"), EMPTY_SHARE_OF_MISSING)

    first = r.forename(r.rate("middle_shown"))
    first = _blank(rng, r.whitespace(first), r.rate("forename_missing"), 0.0)
    surname = _blank(rng, r.whitespace(r.surname()), r.rate("surname_missing"), 0.0)

    y, m, d, _ = r.dob()
    dob = _join(_int_str(y, 4), _int_str(m, 2), _int_str(d, 2), sep="-")
    dob = _blank(rng, dob, r.rate("dob_missing"), 0.0)

    male = w.male[rp] ^ r.rate("sex_miscoded")
    gender = _where(male, pa.scalar("M"), pa.scalar("F"))
    gender = _where(r.rate("sex_unknown"), pa.scalar("U"), gender)
    gender = _blank(rng, gender, r.rate("sex_missing"), 0.0)

    unit, number, uprn = r.address()
    postcode = _take(w.unit_postcode, unit)
    postcode = _postcode_typos(rng, postcode, r.rate("postcode_typo"))
    postcode = _blank(rng, postcode, r.rate("postcode_missing"), 0.0)
    street = _take(_strs(_STREET_NAMES), w.unit_street[unit])
    stype = _take(_strs([t for t, _, _ in _STREET_TYPES]), w.unit_type[unit])
    address = _join(_int_str(number), street, stype, sep=" ")
    address = _where(rng.random(n) < 0.05, pc.utf8_upper(address), address)
    address = _blank(rng, address, r.rate("address_missing"), 0.0)
    uprn_s = _blank(rng, _int_str(uprn, 12), r.rate("uprn_missing"), 0.0)

    eth = w.ethnicity[rp]
    eth = np.where(r.rate("ethnicity_other"), rng.integers(0, len(_ETHNICITY_CODES), n), eth)
    ethnicity = _blank(rng, _take(_strs(_ETHNICITY_CODES), eth), r.rate("ethnicity_missing"), 0.0)

    table = pa.table({
        "reg_id": reg_id, "nhs_no": nhs_no, "first_names": first, "surname": surname, "date_birth": dob,
        "gender": gender, "postcode": postcode, "address_1": address, "uprn": uprn_s, "ethnicity": ethnicity,
    })
    return table, reg_id


def _community(rng: np.random.Generator, w: _World, rp: np.ndarray, rk: np.ndarray) -> tuple[pa.Table, pa.Array]:
    r = _Rec(rng, w, 1, rp, rk)
    n = r.n
    client_ref = _join("CR", _int_str(_unique_ints(rng, n, 0, 10**8), 8))

    nums, _ = r.nhs()
    plain = _int_str(nums, 10)
    spaced = _join(pc.utf8_slice_codeunits(plain, 0, 3), pc.utf8_slice_codeunits(plain, 3, 6),
                   pc.utf8_slice_codeunits(plain, 6, 10), sep=" ")
    nhs_number = _where(r.rate("nhs_spaced"), spaced, plain)
    nhs_number = _blank(rng, nhs_number, r.rate("nhs_missing"), EMPTY_SHARE_OF_MISSING)

    fore = r.forename(r.rate("middle_shown"))
    fam = r.surname()
    swap = r.rate("names_swapped")
    fore, fam = _where(swap, fam, fore), _where(swap, fore, fam)
    case = rng.random(n)  # one case style per record for both names
    fore = _where(case >= 0.55, pc.utf8_title(fore), fore)
    fore = _where(case >= 0.95, pc.utf8_lower(fore), fore)
    fam = _where(case >= 0.55, pc.utf8_title(fam), fam)
    fam = _where(case >= 0.95, pc.utf8_lower(fam), fam)
    fore = _blank(rng, r.whitespace(fore), r.rate("forename_missing"), EMPTY_SHARE_OF_MISSING)
    fam = _blank(rng, r.whitespace(fam), r.rate("surname_missing"), EMPTY_SHARE_OF_MISSING)

    y, m, d, _ = r.dob()
    dob = _join(_int_str(d, 2), _int_str(m, 2), _int_str(y, 4), sep="/")
    dob = _blank(rng, dob, r.rate("dob_missing"), EMPTY_SHARE_OF_MISSING)

    male = w.male[rp] ^ r.rate("sex_miscoded")
    sex = _where(male, pa.scalar("1"), pa.scalar("2"))
    sex = _where(r.rate("sex_unknown"), pa.scalar("9"), sex)
    sex = _blank(rng, sex, r.rate("sex_missing"), EMPTY_SHARE_OF_MISSING)

    unit, number, uprn = r.address()
    postcode = _take(w.unit_postcode, unit)
    postcode = _postcode_typos(rng, postcode, r.rate("postcode_typo"))
    postcode = _where(r.rate("postcode_no_space"), pc.replace_substring(postcode, " ", ""), postcode)
    postcode = _where(r.rate("postcode_lower"), pc.utf8_lower(postcode), postcode)
    postcode = _blank(rng, postcode, r.rate("postcode_missing"), EMPTY_SHARE_OF_MISSING)

    style = rng.choice(5, n, p=[0.35, 0.25, 0.15, 0.15, 0.10])
    street = _take(_strs(_STREET_NAMES), w.unit_street[unit])
    full = _take(_strs([t for t, _, _ in _STREET_TYPES]), w.unit_type[unit])
    abbr = _take(_strs([a for _, a, _ in _STREET_TYPES]), w.unit_type[unit])
    num = _int_str(number)
    num = _where(style == 1, _join(num, ","), num)
    line = _join(num, street, _where((style == 1) | (style == 2), abbr, full), sep=" ")
    line = _where(style == 2, pc.utf8_title(line), line)
    line = _where(style == 3, _join(line, _take(_strs(list(_TOWNS)), w.unit_town[unit]), sep=", "), line)
    line = _where(style <= 1, pc.utf8_upper(line), line)
    line = _where(style == 4, pc.utf8_lower(line), line)
    line = _blank(rng, line, r.rate("address_missing"), EMPTY_SHARE_OF_MISSING)
    uprn_s = _blank(rng, _int_str(uprn, 12), r.rate("uprn_missing"), EMPTY_SHARE_OF_MISSING)

    table = pa.table({
        "client_ref": client_ref, "nhs_number": nhs_number, "forename": fore, "family_name": fam,
        "birth_dt": dob, "sex_code": sex, "post_code": postcode, "addr_line": line, "uprn_ref": uprn_s,
    })
    return table, client_ref


# ------------------------------------------------------------------------------------------------
# Public API
# ------------------------------------------------------------------------------------------------


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    return table.to_pandas()


def generate(records: int = 150_000, seed: int = 7) -> AltPopulation:
    """About 60 % of `records` in registry and the rest in community, with the truth behind them."""
    if records < 2:
        raise ValueError("records must be at least 2")
    rng = np.random.default_rng([seed, 0xA175])
    n_reg = int(round(records * REGISTRY_SHARE))
    n_reg = min(max(n_reg, 1), records - 1)
    n_com = records - n_reg

    # who is in which source, and how many records each
    k_reg, m_reg = _fill_to(_multiplicity(rng, n_reg, DUPLICATES["registry"]), n_reg)
    n_overlap = min(int(round(COMMUNITY_ALSO_IN_REGISTRY * n_com)), k_reg)
    candidates = np.concatenate([rng.choice(k_reg, n_overlap, replace=False),
                                 k_reg + np.arange(n_com - n_overlap)])
    candidates = rng.permutation(candidates)
    k_com, m_com = _fill_to(_multiplicity(rng, n_com, DUPLICATES["community"]), n_com)
    com_persons = candidates[:k_com]
    used = np.zeros(k_reg + n_com - n_overlap, bool)
    used[:k_reg] = True
    used[com_persons] = True
    index = np.cumsum(used) - 1
    people = int(used.sum())
    com_persons = index[com_persons]
    reg_rp, reg_rk = _records(rng, np.arange(k_reg), m_reg)
    com_rp, com_rk = _records(rng, com_persons, m_com)
    in_reg = np.bincount(reg_rp, minlength=people) > 0
    in_com = np.bincount(com_rp, minlength=people) > 0

    w = _build_world(rng, people, in_reg & in_com)
    reg_table, reg_ids = _registry(rng, w, reg_rp, reg_rk)
    com_table, com_ids = _community(rng, w, com_rp, com_rk)

    truth = pa.table({
        "source": _take(_strs(list(SOURCES)), np.repeat([0, 1], [n_reg, n_com])),
        "record_id": pa.concat_arrays([reg_ids, com_ids]),
        "person_id": _take(w.person_id, np.concatenate([reg_rp, com_rp])),
    })
    y, m, d = _ymd(w.dob)
    clean = pa.table({
        "person_id": w.person_id,
        "nhs_number": _int_str(w.nhs, 10),
        "sex": _where(w.male, pa.scalar("M"), pa.scalar("F")),
        "date_birth": _join(_int_str(y, 4), _int_str(m, 2), _int_str(d, 2), sep="-"),
        "household": _int_str(w.hh),
    })
    return AltPopulation(
        sources={"registry": _to_pandas(reg_table), "community": _to_pandas(com_table)},
        truth=_to_pandas(truth), people=_to_pandas(clean), seed=seed,
    )


def write_parquet(pop: AltPopulation, out_dir) -> dict[str, Path]:
    """out_dir/registry.parquet, out_dir/community.parquet and out_dir/truth.parquet."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames = {**pop.sources, "truth": pop.truth}
    paths = {}
    for name, df in frames.items():
        paths[name] = out / f"{name}.parquet"
        pq.write_table(pa.Table.from_pandas(df, preserve_index=False), paths[name])
    return paths


def summary(pop: AltPopulation) -> dict:
    """Aggregate counts only: records per source, people, true pairs."""
    codes, uniques = pd.factorize(pop.truth["person_id"])
    is_reg = (pop.truth["source"] == "registry").to_numpy()
    a = np.bincount(codes[is_reg], minlength=len(uniques)).astype(np.int64)
    b = np.bincount(codes[~is_reg], minlength=len(uniques)).astype(np.int64)
    cross = int((a * b).sum())
    within_reg = int((a * (a - 1) // 2).sum())
    within_com = int((b * (b - 1) // 2).sum())
    return {
        "records": {name: len(df) for name, df in pop.sources.items()},
        "records_total": int(len(pop.truth)),
        "people": int(len(uniques)),
        "people_in_both": int(((a > 0) & (b > 0)).sum()),
        "true_pairs": {"cross_source": cross, "within_registry": within_reg, "within_community": within_com,
                       "total": cross + within_reg + within_com},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=150_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    pop = generate(records=args.records, seed=args.seed)
    t1 = time.perf_counter()
    write_parquet(pop, args.out)
    t2 = time.perf_counter()
    result = {"seed": args.seed, **summary(pop), "generate_seconds": round(t1 - t0, 2),
              "write_seconds": round(t2 - t1, 2)}
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
