"""Seeded synthetic UK cross-sectoral records (GP, hospital, council social care), built in Spark.

Nothing passes through the driver but small reference lists: the population starts from
`spark.range`, and every random draw is a hash of (seed, key, field name), so the output does
not depend on partitioning, executor count or run order. Same seed, same rows.

No real personal data: names, postcode areas and NHS numbers are drawn from public reference
lists and arithmetic. NHS numbers are unique per person (a bijective scramble of person_id) for
up to 360 million people, pass Modulus 11 and never fall in the 999 test range.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from tre_link.platform.config import SynthConfig
from tre_link.platform.delta_io import write_delta
from tre_link.ingest.nhs_number import check_digit

SOURCES = ("gp", "hospital", "council")
REFERENCE_DATE = date(2025, 1, 1)  # ages are taken here (fixed, so reruns agree)
_LAST_EVENT_DATE = date(2024, 12, 31)

# --------------------------------------------------------------------------------------------
# Reference lists (public, non-personal). Ordered roughly by prevalence; the draw is Zipf-like.
# --------------------------------------------------------------------------------------------

_SURNAMES = """
SMITH JONES WILLIAMS TAYLOR BROWN DAVIES EVANS WILSON THOMAS JOHNSON ROBERTS ROBINSON THOMPSON
WRIGHT WALKER WHITE EDWARDS HUGHES GREEN HALL LEWIS HARRIS CLARKE PATEL JACKSON WOOD TURNER
MARTIN COOPER HILL WARD MORRIS MOORE CLARK LEE KING BAKER HARRISON MORGAN ALLEN JAMES SCOTT
PHILLIPS WATSON DAVIS PARKER PRICE BENNETT YOUNG GRIFFITHS MITCHELL KELLY COOK CARTER RICHARDSON
BAILEY COLLINS BELL SHAW MURPHY MILLER COX RICHARDS KHAN MARSHALL ANDERSON SIMPSON ELLIS ADAMS
SINGH BEGUM WILKINSON FOSTER CHAPMAN POWELL WEBB ROGERS GRAY MASON ALI HUNT HUSSAIN CAMPBELL
MATTHEWS OWEN PALMER HOLMES MILLS BARNES KNIGHT LLOYD BUTLER RUSSELL BARKER FISHER STEVENS
JENKINS MURRAY DIXON HARVEY GRAHAM PEARSON AHMED FLETCHER WALSH KAUR GIBSON HOWARD ANDREWS
STEWART ELLIOTT REYNOLDS SAUNDERS PAYNE FOX FORD PEARCE DAY BROOKS WEST LAWRENCE COLE ATKINSON
BRADLEY SPENCER GILL DAWSON BALL BURTON O'BRIEN WATTS ROSE BOOTH PERRY RYAN GRANT WELLS
ARMSTRONG FRANCIS REES HAYES HART HUDSON NEWMAN BARRETT WEBSTER HUNTER GREGORY CARR LOWE PAGE
MARSH RILEY DUNN WOODS PARSONS BERRY STONE REID HOLLAND HAWKINS HARDING PORTER ROBERTSON NEWTON
OLIVER REED KENNEDY WILLIAMSON BIRD GARDNER SHAH DODD MORRISON HOLT HAMILTON POTTER FRENCH
BUCKLEY JORDAN NORRIS FIELD MANN HOPKINS SUTTON RAHMAN TUCKER BURNS BARBER WALLACE DEAN KEMP
MOSS BRYANT BOND WHEELER TODD GRIFFIN FULLER HEWITT LAMBERT SIMMONS KENT PIERCE SUMMERS BATES
HANCOCK MIAH SHARP FARRELL PRESTON FLYNN NICHOLSON O'CONNOR LAWSON HORTON WARREN SULLIVAN
SUTHERLAND CRAIG MCDONALD MACDONALD BROOKES DOYLE NASH CHAMBERS PARK OSBORNE HOUGHTON MCCARTHY
BARTON STEELE AKHTAR HOOPER FOWLER DUNCAN HARPER COLEMAN GOODWIN SHARPE LYONS WALTON CHAN
NGUYEN OKAFOR MENSAH ADEBAYO OKONKWO BOATENG OWUSU NOWAK KOWALSKI SHEIKH IQBAL MAHMOOD
CHAUDHRY ISLAM UDDIN ROSS FRASER PATERSON MORRISSEY QUINN BYRNE CONNOLLY CARROLL GALLAGHER
DONNELLY HEALY WHITEHEAD BARNETT BOWEN CHARLTON LEACH MOODY PRINCE NORTON BRIGGS NAYLOR RHODES
HOWELLS PRITCHARD VAUGHAN JARVIS HORNE BLAKE SHEPHERD CROSS HOLDEN BROWNE PAGET ASHWORTH
KIRK BOWLER WHITTAKER HEATH LUCAS BURKE MAY FROST STANLEY BARLOW PRATT GOUGH HYDE MORTON
CRAWFORD SWEENEY KERR MCKENZIE MACLEOD WATT HENDERSON KELLY-SMITH ASHWORTH-JONES DUFFY
FERGUSON BLACK RAMSAY GORDON HAY DOUGLAS BOYLE
"""

# Given names: one list for people born before 1985, one for after; each ordered by prevalence.
_MALE_OLDER = """
DAVID JOHN MICHAEL PAUL ANDREW PETER JAMES ROBERT MARK RICHARD STEPHEN CHRISTOPHER IAN ANTHONY
WILLIAM GARY KEVIN ALAN BRIAN STEVEN SIMON MARTIN NEIL GRAHAM KEITH COLIN PHILIP TREVOR KENNETH
GEORGE THOMAS DEREK ROGER RAYMOND BARRY GORDON NIGEL ROY TERENCE LEONARD FRANK DENNIS RONALD
DONALD NICHOLAS JONATHAN TIMOTHY MALCOLM STUART DEAN JASON CRAIG DARREN LEE WAYNE SHAUN GARETH
ALBERT ARTHUR HAROLD FREDERICK ERNEST STANLEY WALTER NORMAN ERIC DOUGLAS EDWARD CHARLES HENRY
JOSEPH DANIEL MATTHEW MOHAMMED SANJAY RAJESH PATRICK SEAN DESMOND CLIVE GEOFFREY ROBIN HUGH
ALEXANDER RUSSELL GLENN DUNCAN ADRIAN VINCENT
"""
_MALE_YOUNGER = """
OLIVER JACK HARRY GEORGE NOAH CHARLIE JACOB ALFIE FREDDIE OSCAR LEO ARCHIE MUHAMMAD THOMAS
JAMES WILLIAM JOSHUA DANIEL SAMUEL JOSEPH HENRY ETHAN MASON LOGAN LUCAS ISAAC DYLAN RYAN LIAM
CONNOR CALLUM JAMIE LEWIS KIERAN TYLER MAX ALEXANDER BENJAMIN ADAM LUKE NATHAN AARON JORDAN
BRADLEY ELLIOT REECE JAKE TOBY FINLEY RILEY HARVEY THEO ARTHUR TEDDY ALEX MATTHEW CHRISTOPHER
MICHAEL DAVID AYAAN ZAIN IBRAHIM YUSUF OMAR ALI HAMZA REUBEN SEBASTIAN ELIJAH JENSON RORY
FINN LOUIS HUGO ZACHARY KAI ROBERT ANDREW EDWARD ALBIE RONNIE STANLEY FRANKIE
"""
_FEMALE_OLDER = """
SUSAN MARGARET SARAH ELIZABETH MARY PATRICIA CAROL LINDA JULIE KAREN HELEN JANET CHRISTINE
JACQUELINE ANNE JEAN ALISON GILLIAN ANGELA DEBORAH TRACEY NICOLA AMANDA LISA JULIA CLAIRE
JOANNE SANDRA PAULINE BARBARA JOAN DOROTHY SHEILA MAUREEN BRENDA VALERIE JENNIFER CATHERINE
RACHEL EMMA VICTORIA KATHERINE SHARON DAWN MICHELLE DIANE LORRAINE DENISE WENDY JUNE IRENE
DORIS BETTY JOYCE EILEEN KATHLEEN ELSIE VERA MARJORIE HAZEL PAMELA SYLVIA ROSEMARY JILL
CAROLINE LOUISE SALLY PENELOPE RUTH ANN FIONA MANDY KIM JOANNA HEATHER YVONNE BEVERLEY ANITA
ROSE AMINA PARVEEN SHIRLEY AUDREY JANICE CHERYL
"""
_FEMALE_YOUNGER = """
OLIVIA AMELIA ISLA AVA EMILY SOPHIA GRACE MIA POPPY ELLA LILY EVIE ISABELLA SOPHIE IVY FREYA
HARPER WILLOW CHARLOTTE JESSICA ROSIE DAISY ALICE FLORENCE PHOEBE MATILDA RUBY EVELYN SIENNA
HOLLY CHLOE MEGAN LAUREN HANNAH REBECCA AMY BETHANY SHANNON ABIGAIL ELLIE KATIE CHELSEA JADE
LEAH GEORGIA ERIN MOLLY LUCY ZARA AISHA FATIMA MARYAM HAFSA NATASHA SAMANTHA STACEY DANIELLE
LAURA GEMMA HOLLIE ESME ELSIE MAISIE ROSE ELEANOR SCARLETT ARIA LAYLA NANCY BONNIE MILLIE
VIOLET EMMA VICTORIA KATHERINE SARAH JASMINE COURTNEY PAIGE
"""

# (area, highest district number, relative population weight)
_POSTCODE_AREAS = (
    ("B", 76, 15), ("M", 50, 12), ("LS", 29, 8), ("L", 40, 8), ("S", 36, 8), ("BS", 41, 8),
    ("NE", 71, 8), ("SW", 20, 9), ("SE", 28, 10), ("N", 22, 8), ("E", 18, 9), ("W", 14, 6),
    ("NW", 11, 5), ("CF", 83, 6), ("SA", 73, 4), ("NP", 44, 3), ("G", 84, 7), ("EH", 55, 5),
    ("AB", 56, 3), ("DD", 11, 2), ("NG", 34, 6), ("LE", 19, 6), ("CV", 47, 5), ("SO", 53, 5),
    ("PO", 41, 5), ("BN", 45, 5), ("OX", 49, 4), ("CB", 25, 3), ("NR", 35, 4), ("EX", 39, 4),
    ("PL", 35, 3), ("TR", 27, 2), ("YO", 62, 4), ("HU", 20, 3), ("BD", 24, 4), ("HD", 9, 2),
    ("WF", 17, 3), ("DN", 41, 4), ("SR", 8, 2), ("DH", 9, 2), ("TS", 29, 4), ("CA", 28, 2),
    ("LA", 23, 2), ("PR", 26, 3), ("BB", 18, 3), ("BL", 9, 2), ("OL", 16, 3), ("SK", 23, 4),
    ("WA", 16, 4), ("CH", 66, 3), ("ST", 21, 4), ("DE", 75, 4), ("WV", 16, 3), ("WS", 15, 3),
    ("DY", 14, 3), ("GL", 56, 3), ("BA", 22, 2), ("TA", 24, 2), ("RG", 45, 4), ("SL", 9, 2),
    ("MK", 46, 3), ("LU", 7, 2), ("CM", 24, 3), ("IP", 33, 3), ("PE", 38, 4), ("ME", 20, 3),
    ("CT", 21, 3), ("TN", 40, 3), ("GU", 52, 4), ("KT", 24, 3), ("CR", 8, 2), ("BR", 8, 2),
)
_INWARD_LETTERS = "ABDEFGHJLNPQRSTUWXYZ"

# ONS 2021 census (England and Wales), high-level groups, per 1000.
_ETHNIC_GROUPS = (("White", 817), ("Asian", 93), ("Black", 40), ("Mixed", 29), ("Other", 21))

_SPECIALTIES = (
    ("General Medicine", 18), ("Accident & Emergency", 16), ("General Surgery", 10),
    ("Trauma & Orthopaedics", 9), ("Geriatric Medicine", 8), ("Cardiology", 6),
    ("Respiratory Medicine", 5), ("Obstetrics", 5), ("Gastroenterology", 5), ("Urology", 4),
    ("Ophthalmology", 4), ("ENT", 3), ("Clinical Oncology", 4), ("Psychiatry", 3),
)
_SERVICE_TYPES = (
    ("Home care", 25), ("Residential care", 10), ("Nursing care", 7), ("Day services", 8),
    ("Direct payment", 10), ("Reablement", 10), ("Carer support", 8), ("Safeguarding", 7),
    ("Children in need", 10), ("Looked after child", 5),
)
_TYPO_LETTERS = "ABCDEFGHIKLMNOPRSTUWY"


def _words(block: str) -> list[str]:
    return list(dict.fromkeys(block.split()))


SURNAMES = _words(_SURNAMES)
GIVEN_NAMES = {
    ("M", "older"): _words(_MALE_OLDER),
    ("M", "younger"): _words(_MALE_YOUNGER),
    ("F", "older"): _words(_FEMALE_OLDER),
    ("F", "younger"): _words(_FEMALE_YOUNGER),
}


@lru_cache(maxsize=1)
def nickname_map() -> dict[str, list[str]]:
    """Upper-case given name -> up to 3 common nicknames, for the names in our lists only."""
    from nicknames import NickNamer

    namer = NickNamer()
    names = sorted({n for names in GIVEN_NAMES.values() for n in names})
    out: dict[str, list[str]] = {}
    for name in names:
        nicks = [n.upper() for n in namer.nicknames_of(name.lower()) if n.isalpha() and len(n) >= 3]
        nicks = [n for n in nicks if n != name]
        # Prefer nicknames sharing the first letter (Will for William over Bela), then shorter ones.
        nicks.sort(key=lambda n: (n[0] != name[0], len(n), n))
        if nicks:
            out[name] = nicks[:3]
    return out


# --------------------------------------------------------------------------------------------
# Hash-based draws: every random value is a function of (seed, key columns, field name).
# --------------------------------------------------------------------------------------------


class _Draw:
    def __init__(self, seed: int, *keys: Column):
        self.seed = seed
        self.keys = keys

    def hash(self, field: str) -> Column:
        return F.xxhash64(F.lit(self.seed), *self.keys, F.lit(field))

    def unit(self, field: str) -> Column:
        """Uniform double in [0, 1)."""
        return F.shiftrightunsigned(self.hash(field), 11).cast("double") / float(1 << 53)

    def below(self, field: str, n: int | Column) -> Column:
        """Uniform long in [0, n)."""
        return F.pmod(self.hash(field), n if isinstance(n, Column) else F.lit(n))


def _str_array(values) -> Column:
    # A split of one literal constant-folds to a single array literal (no huge CreateArray).
    values = list(values)
    assert all("|" not in v for v in values)
    return F.split(F.lit("|".join(values)), r"\|")


def _zipf_pick(values: list[str], u: Column, s: float) -> Column:
    """Pick values[rank-1] with P(rank) roughly proportional to rank**-s (continuous inverse CDF)."""
    n, a = len(values), 1.0 - s
    x = F.pow(F.lit(1.0) + u * F.lit((n + 1) ** a - 1.0), F.lit(1.0 / a))
    idx = F.least(F.floor(x), F.lit(n)).cast("int")
    return F.element_at(_str_array(values), idx)


def _weighted_pick(pairs, u: Column) -> Column:
    expanded = [value for value, weight in pairs for _ in range(weight)]
    idx = (F.floor(u * F.lit(len(expanded))) + 1).cast("int")
    return F.element_at(_str_array(expanded), idx)


def _seed_constants(seed: int) -> tuple[int, int]:
    """Multiplier and offset of the NHS-number scramble, derived from the seed (not from Spark)."""
    digest = hashlib.sha256(f"tre-link-nhs-{seed}".encode()).digest()
    multipliers = (179_424_691, 122_949_829, 217_645_177, 141_650_963, 256_203_161, 198_491_329)
    return multipliers[digest[0] % len(multipliers)], int.from_bytes(digest[1:9], "big") % _NHS_SLOTS


_NHS_SLOTS = 360_000_000  # 40M 8-digit prefixes x 9 valid last stem digits


def _with_nhs_number(df: DataFrame, seed: int) -> DataFrame:
    """Add nhs_number: unique per person_id (< 360M), valid Modulus 11, 400-799 ranges, never 999."""
    a, b = _seed_constants(seed)
    person = F.pmod(F.col("person_id"), F.lit(_NHS_SLOTS))
    slot = F.col("_slot")
    prefix = F.col("_prefix")
    weighted = sum((F.substring(prefix, i, 1).cast("int") * (11 - i) for i in range(1, 9)), F.lit(0))
    # The one ninth digit (if any) that makes the check digit 10 (invalid): (1 - S) * 2^-1 mod 11.
    bad = F.pmod((F.lit(1) - weighted) * 6, F.lit(11))
    j = F.pmod(slot, F.lit(9)).cast("int")
    return _steps(
        df,
        ("_slot", F.pmod(person * F.lit(a) + F.lit(b), F.lit(_NHS_SLOTS))),
        ("_prefix", (F.lit(40_000_000) + F.floor(slot / 9)).cast("long").cast("string")),
        ("_nine", F.concat(prefix, F.when(j >= bad, j + 1).otherwise(j).cast("string"))),
        ("nhs_number", F.concat(F.col("_nine"), check_digit(F.col("_nine")).cast("string"))),
    ).drop("_slot", "_prefix", "_nine")


def _record_code(seed: int, source: str, seq: Column) -> Column:
    """A 4-round Feistel permutation of a 40-bit sequence number, as 10 hex digits: unique, opaque."""
    mask = F.lit((1 << 20) - 1)
    left = F.shiftright(seq, 20).bitwiseAND(mask)
    right = seq.bitwiseAND(mask)
    for rnd in range(4):
        f = F.xxhash64(F.lit(seed), F.lit(source), F.lit(rnd), right).bitwiseAND(mask)
        left, right = right, left.bitwiseXOR(f)
    value = F.shiftleft(left, 20).bitwiseOR(right)
    return F.lpad(F.hex(value), 10, "0")


# --------------------------------------------------------------------------------------------
# Error processes (per record).
# --------------------------------------------------------------------------------------------


def _typo(value: Column, d: _Draw, field: str, rate: float) -> Column:
    """One-character substitution (60%) or deletion (40%, names of 3+ letters) with probability rate."""
    length = F.length(value)
    pos = (d.below(f"{field}.typo_pos", F.greatest(length, F.lit(1))) + 1).cast("int")
    letter = F.substring(F.lit(_TYPO_LETTERS), (d.below(f"{field}.typo_letter", len(_TYPO_LETTERS)) + 1).cast("int"), 1)
    before = F.substring(value, F.lit(1), pos - 1)
    after = F.substring(value, pos + 1, length)
    old = F.substring(value, pos, F.lit(1))
    substituted = F.concat(before, F.when(letter == old, F.lit("E")).otherwise(letter), after)
    deleted = F.concat(before, after)
    kind = d.unit(f"{field}.typo_kind")
    typo = F.when((kind < 0.4) & (length >= 3), deleted).otherwise(substituted)
    return F.when(value.isNotNull() & (length > 0) & (d.unit(f"{field}.typo") < rate), typo).otherwise(value)


def _nickname(value: Column, d: _Draw, field: str, rate: float) -> Column:
    mapping = nickname_map()
    keys, vals = list(mapping), ["/".join(v) for v in mapping.values()]
    lookup = F.map_from_arrays(_str_array(keys), _str_array(vals))
    options = F.split(F.try_element_at(lookup, value), "/")
    pick = F.try_element_at(options, (d.below(f"{field}.nick_pick", 3) + 1).cast("int"))
    chosen = F.coalesce(pick, F.try_element_at(options, F.lit(1)))
    apply = value.isNotNull() & (d.unit(f"{field}.nick") < rate)
    return F.when(apply & chosen.isNotNull(), chosen).otherwise(value)


def _missing(value: Column, d: _Draw, field: str, rate: float) -> Column:
    return F.when(d.unit(f"{field}.missing") < rate, F.lit(None).cast("string")).otherwise(value)


def _digit_typo(nhs: Column, d: _Draw, sub_rate: float, swap_rate: float, width: int = 10) -> Column:
    """Substitute one digit (rate sub_rate) or transpose two adjacent digits (rate swap_rate)."""
    u = d.unit("nhs.error")
    pos = (d.below("nhs.pos", width - 1) + 1).cast("int")  # swap pos and pos + 1
    sub_pos = (d.below("nhs.sub_pos", width) + 1).cast("int")
    old = F.substring(nhs, sub_pos, F.lit(1)).cast("int")
    new = F.pmod(old + 1 + d.below("nhs.sub_digit", 9), F.lit(10)).cast("string")
    substituted = F.concat(F.substring(nhs, F.lit(1), sub_pos - 1), new, F.substring(nhs, sub_pos + 1, F.lit(10)))
    transposed = F.concat(
        F.substring(nhs, F.lit(1), pos - 1),
        F.substring(nhs, pos + 1, F.lit(1)),
        F.substring(nhs, pos, F.lit(1)),
        F.substring(nhs, pos + 2, F.lit(10)),
    )
    return F.when(u < sub_rate, substituted).when(u < sub_rate + swap_rate, transposed).otherwise(nhs)


def _with_valid_digit_error(df: DataFrame, d: _Draw, sub_rate: float, swap_rate: float) -> DataFrame:
    """Replace _nhs with a keying error that still passes Modulus 11, as entry-validating systems allow.

    One digit of the first nine is substituted (rate sub_rate) or two adjacent ones transposed
    (rate swap_rate) and the check digit recomputed: a wrong but valid number. When no valid check
    digit exists for the altered stem (or it falls in the 999 test range), the number is kept.
    """
    stem, check = F.col("_stem"), F.col("_check")
    return _steps(
        df,
        ("_stem", _digit_typo(F.substring(F.col("_nhs"), 1, 9), d, sub_rate, swap_rate, width=9)),
        ("_check", check_digit(stem)),
        ("_nhs", F.when(check.isNull() | stem.startswith("999"), F.col("_nhs")).otherwise(
            F.concat(stem, check.cast("string")))),
    ).drop("_stem", "_check")


def _dob_parts(d: _Draw, swap_rate: float, other_rate: float) -> tuple[Column, Column, Column]:
    """Recorded (year, month, day): day/month swapped where valid, or a wrong day or year."""
    y, m, day = F.col("dob_y"), F.col("dob_m"), F.col("dob_d")
    u = d.unit("dob.error")
    swap = (u < swap_rate) & (day <= 12) & (day != m)
    other = (u >= swap_rate) & (u < swap_rate + other_rate)
    wrong_year = other & (d.unit("dob.kind") < 0.5) & ~((m == 2) & (day == 29))
    wrong_day = other & ~wrong_year
    year = F.when(wrong_year, y + F.when(d.unit("dob.sign") < 0.5, -1).otherwise(1)).otherwise(y)
    new_day = (d.below("dob.day", 28) + 1).cast("int")
    month = F.when(swap, day).otherwise(m)
    dday = F.when(swap, m).when(wrong_day, new_day).otherwise(day)
    dday = F.when(wrong_day & (dday == day), F.when(day > 1, day - 1).otherwise(2)).otherwise(dday)
    return year, month, dday


def _postcode(d: _Draw, moved_rate: float) -> Column:
    moved = F.col("postcode_new").isNotNull() & (d.unit("postcode.moved") < moved_rate)
    return F.when(moved, F.col("postcode_new")).otherwise(F.col("postcode_true"))


def _surname(d: _Draw) -> Column:
    """Changed surname (marriage): a record shows the former surname half the time."""
    former = F.col("has_changed_surname") & (d.unit("surname.former") < 0.5)
    return F.when(former, F.col("former_family_name")).otherwise(F.col("family_name_true"))


def _date_between(d: _Draw, field: str, start: Column, end: date) -> Column:
    span = F.datediff(F.lit(end), start)
    offset = F.floor(d.unit(field) * (span + 1)).cast("int")
    return F.date_add(start, offset)


# --------------------------------------------------------------------------------------------
# Population and sources.
# --------------------------------------------------------------------------------------------


def _random_postcode(d: _Draw, field: str, area_u: Column, area: Column | None = None) -> Column:
    areas = [a for a, _, _ in _POSTCODE_AREAS]
    max_district = F.map_from_arrays(
        _str_array(areas), F.split(F.lit("|".join(str(m) for _, m, _ in _POSTCODE_AREAS)), r"\|")
    )
    chosen_area = area if area is not None else _weighted_pick([(a, w) for a, _, w in _POSTCODE_AREAS], area_u)
    top = F.try_element_at(max_district, chosen_area).cast("int")
    district = (d.below(f"{field}.district", top) + 1).cast("string")
    letters = F.lit(_INWARD_LETTERS)
    l1 = F.substring(letters, (d.below(f"{field}.l1", 20) + 1).cast("int"), 1)
    l2 = F.substring(letters, (d.below(f"{field}.l2", 20) + 1).cast("int"), 1)
    sector = d.below(f"{field}.sector", 10).cast("string")
    return F.concat(chosen_area, district, F.lit(" "), sector, l1, l2)


def population(spark: SparkSession, cfg: SynthConfig, *, partitions: int | None = None) -> DataFrame:
    """One row per true person (the truth behind every source record). Never written as-is.

    partitions: how many partitions spark.range starts with (default: Spark's parallelism); the
    rows never depend on it.
    """
    seed = cfg.seed
    d = _Draw(seed, F.col("person_id"))
    people = spark.range(0, cfg.people, 1, partitions).withColumnRenamed("id", "person_id")

    # Age: broadly flat to 70, thinning to 100 (a rough UK pyramid); dob from a fixed reference date.
    u_age, u_old = d.unit("age.band"), d.unit("age.value")
    age_years = F.when(u_age < 0.84, u_old * 70.0).otherwise(70.0 + 30.0 * (1.0 - F.sqrt(u_old)))
    days_back = F.floor(age_years * 365.25).cast("int")
    people = people.select(
        "person_id",
        F.when(d.unit("sex") < 0.505, F.lit("F")).otherwise(F.lit("M")).alias("sex"),
        F.date_sub(F.lit(REFERENCE_DATE), days_back).alias("dob"),
        F.floor(age_years).cast("int").alias("age"),
    )
    skewed = d.unit("skew") < F.lit(cfg.skewed_surname_share)
    older = F.year("dob") < 1985
    u_given = d.unit("given_name")
    # Skewed people also get one of the top three given names of their sex and cohort.
    u_given = F.when(skewed, u_given * 0.02).otherwise(u_given)
    given = (
        F.when((F.col("sex") == "M") & older, _zipf_pick(GIVEN_NAMES[("M", "older")], u_given, 0.7))
        .when(F.col("sex") == "M", _zipf_pick(GIVEN_NAMES[("M", "younger")], u_given, 0.7))
        .when(older, _zipf_pick(GIVEN_NAMES[("F", "older")], u_given, 0.7))
        .otherwise(_zipf_pick(GIVEN_NAMES[("F", "younger")], u_given, 0.7))
    )
    family = F.when(skewed, F.lit(SURNAMES[0])).otherwise(_zipf_pick(SURNAMES, d.unit("family_name"), 0.65))
    other_family = _zipf_pick(SURNAMES, d.unit("family_name.former"), 0.65)
    adult = F.col("age") >= 18
    changed = adult & (
        ((F.col("sex") == "F") & (d.unit("surname.changed") < 0.06))
        | ((F.col("sex") == "M") & (d.unit("surname.changed") < 0.005))
    )
    home = _random_postcode(d, "postcode", d.unit("postcode.area"))
    moved_area = F.regexp_extract(home, r"^([A-Z]+)", 1)
    moved_far = d.unit("postcode.moved_far") < 0.3
    new_home = F.when(moved_far, _random_postcode(d, "postcode_new", d.unit("postcode_new.area"))).otherwise(
        _random_postcode(d, "postcode_new", None, moved_area)
    )
    people = people.select(
        "*",
        given.alias("given_name_true"),
        family.alias("family_name_true"),
        F.when(changed, other_family).alias("former_family_name"),
        changed.alias("has_changed_surname"),
        F.year("dob").alias("dob_y"),
        F.month("dob").alias("dob_m"),
        F.dayofmonth("dob").alias("dob_d"),
        home.alias("postcode_true"),
        (d.unit("moved") < 0.25).alias("has_moved"),
        _weighted_pick(_ETHNIC_GROUPS, d.unit("ethnic_group")).alias("ethnic_group_true"),
        (d.below("imd", 5) + 1).cast("int").alias("imd_quintile_true"),
    )
    people = _with_nhs_number(people, seed)
    return people.withColumn(
        "postcode_new", F.when(F.col("has_moved"), new_home).otherwise(F.lit(None).cast("string"))
    ).withColumn(
        "postcode_new",
        F.when(F.col("postcode_new") == F.col("postcode_true"), None).otherwise(F.col("postcode_new")),
    )


def _ethnic(d: _Draw, missing: float, wrong: float) -> Column:
    other = _weighted_pick(_ETHNIC_GROUPS, d.unit("ethnic.other"))
    value = F.when(d.unit("ethnic.wrong") < wrong, other).otherwise(F.col("ethnic_group_true"))
    return _missing(value, d, "ethnic", missing)


def _imd(d: _Draw, missing: float) -> Column:
    return F.when(d.unit("imd.missing") < missing, F.lit(None).cast("int")).otherwise(F.col("imd_quintile_true"))


def _steps(df: DataFrame, *steps: tuple[str, Column]) -> DataFrame:
    """Apply column steps one projection at a time, so no single generated method grows too big."""
    for name, column in steps:
        df = df.withColumn(name, column)
    return df


def _record_fields(recs: DataFrame, d: _Draw, rates: dict[str, float], *, validated_nhs: bool) -> DataFrame:
    """Shared error processes: NHS number, names, date of birth parts and postcode (staged).

    validated_nhs: the provider checks Modulus 11 at entry, so NHS number errors are wrong-but-valid.
    """
    y, m, day = _dob_parts(d, rates["dob_swap"], rates["dob_other"])
    if validated_nhs:
        recs = recs.withColumn("_nhs", F.col("nhs_number"))
        recs = _with_valid_digit_error(recs, d, rates["nhs_sub"], rates["nhs_swap"])
    else:
        recs = recs.withColumn("_nhs", _digit_typo(F.col("nhs_number"), d, rates["nhs_sub"], rates["nhs_swap"]))
    return _steps(
        recs,
        ("_nhs", _missing(F.col("_nhs"), d, "nhs", rates["nhs_missing"])),
        ("_given", _nickname(F.col("given_name_true"), d, "given", rates["nickname"])),
        ("_given", _typo(F.col("_given"), d, "given", rates["name_typo"])),
        ("_given", _missing(F.col("_given"), d, "given", rates["given_missing"])),
        ("_family", _surname(d)),
        ("_family", _typo(F.col("_family"), d, "family", rates["name_typo"])),
        ("_family", _missing(F.col("_family"), d, "family", rates["family_missing"])),
        ("_y", y),
        ("_m", m),
        ("_d", day),
        ("_pc", _postcode(d, rates["moved"])),
    )


def _gp(people: DataFrame, seed: int) -> DataFrame:
    pd = _Draw(seed, F.lit("gp"), F.col("person_id"))
    in_source = people.where(pd.unit("included") < 0.95)
    recs = in_source.withColumn(
        "k", F.explode(F.sequence(F.lit(1), F.when(pd.unit("duplicate") < 0.01, 2).otherwise(1)))
    )
    d = _Draw(seed, F.lit("gp"), F.col("person_id"), F.col("k"))
    recs = _record_fields(recs, d, dict(
        nhs_sub=0.005, nhs_swap=0.003, nhs_missing=0.02, nickname=0.02, name_typo=0.01,
        given_missing=0.005, family_missing=0.003, dob_swap=0.004, dob_other=0.004, moved=0.05,
    ), validated_nhs=True)
    dob = _missing(F.format_string("%04d-%02d-%02d", "_y", "_m", "_d"), d, "dob", 0.005)
    gender = F.when(d.unit("sex.unknown") < 0.003, F.lit("U")).otherwise(F.col("sex"))
    registration = _date_between(d, "registration", F.greatest(F.col("dob"), F.lit(date(1995, 1, 1))), _LAST_EVENT_DATE)
    seq = F.col("person_id") * 2 + (F.col("k") - 1)
    return recs.select(
        F.concat(F.lit("G"), _record_code(seed, "gp", seq)).alias("gp_patient_id"),
        F.col("_nhs").alias("nhs_no"),
        F.initcap("_given").alias("forename"),
        F.initcap("_family").alias("surname"),
        dob.alias("date_of_birth"),
        gender.alias("gender"),
        _missing(F.col("_pc"), d, "postcode", 0.01).alias("postcode"),
        _ethnic(d, 0.05, 0.01).alias("ethnic_group"),
        _imd(d, 0.01).alias("imd_quintile"),
        registration.alias("registration_date"),
        "person_id",
    )


def _hospital(people: DataFrame, seed: int) -> DataFrame:
    pd = _Draw(seed, F.lit("hospital"), F.col("person_id"))
    # Older people are admitted more often.
    p_in = F.when(F.col("age") >= 65, 0.62).when(F.col("age") >= 18, 0.36).otherwise(0.30)
    in_source = people.where(pd.unit("included") < p_in)
    u_n = pd.unit("episodes")
    episodes = F.when(u_n < 0.55, 1).when(u_n < 0.80, 2).when(u_n < 0.92, 3).otherwise(4)
    recs = in_source.withColumn("k", F.explode(F.sequence(F.lit(1), episodes)))
    d = _Draw(seed, F.lit("hospital"), F.col("person_id"), F.col("k"))
    recs = _record_fields(recs, d, dict(
        nhs_sub=0.01, nhs_swap=0.005, nhs_missing=0.10, nickname=0.05, name_typo=0.02,
        given_missing=0.01, family_missing=0.005, dob_swap=0.01, dob_other=0.005, moved=0.4,
    ), validated_nhs=False)
    nhs = F.col("_nhs")
    swap_names = d.unit("names.swapped") < 0.003
    recs = _steps(
        recs,
        ("_nhs", F.when(nhs.isNotNull(), F.concat_ws(" ", F.substring(nhs, 1, 3), F.substring(nhs, 4, 3),
                                                     F.substring(nhs, 7, 4)))),
        ("_swap", swap_names),
        ("_first", F.when(F.col("_swap"), F.col("_family")).otherwise(F.col("_given"))),
        ("_last", F.when(F.col("_swap"), F.col("_given")).otherwise(F.col("_family"))),
        ("_pc", F.when(d.unit("postcode.nospace") < 0.15, F.regexp_replace("_pc", " ", "")).otherwise(F.col("_pc"))),
        ("_pc", F.when(d.unit("postcode.lower") < 0.10, F.lower("_pc")).otherwise(F.col("_pc"))),
        ("_pc", _missing(F.col("_pc"), d, "postcode", 0.02)),
    )
    dob = _missing(F.format_string("%02d/%02d/%04d", "_d", "_m", "_y"), d, "dob", 0.005)
    sex = F.when(d.unit("sex.unknown") < 0.005, F.lit("9")).when(F.col("sex") == "M", F.lit("1")).otherwise(F.lit("2"))
    admission = _date_between(d, "admission", F.greatest(F.col("dob"), F.lit(date(2015, 1, 1))), _LAST_EVENT_DATE)
    specialty = (
        F.when((F.col("age") < 16) & (d.unit("specialty.child") < 0.7), F.lit("Paediatrics"))
        .when((F.col("age").between(16, 45)) & (F.col("sex") == "F") & (d.unit("specialty.obs") < 0.15),
              F.lit("Obstetrics"))
        .otherwise(_weighted_pick(_SPECIALTIES, d.unit("specialty")))
    )
    seq = F.col("person_id") * 4 + (F.col("k") - 1)
    return recs.select(
        F.concat(F.lit("EP"), _record_code(seed, "hospital", seq)).alias("episode_id"),
        F.col("_nhs").alias("nhs_number"),
        F.upper("_first").alias("first_name"),
        F.upper("_last").alias("last_name"),
        dob.alias("dob"),
        sex.alias("sex"),
        F.col("_pc").alias("postcode"),
        admission.alias("admission_date"),
        specialty.alias("specialty"),
        _ethnic(d, 0.08, 0.02).alias("ethnic_group"),
        _imd(d, 0.02).alias("imd_quintile"),
        "person_id",
    )


def _council(people: DataFrame, seed: int) -> DataFrame:
    pd = _Draw(seed, F.lit("council"), F.col("person_id"))
    p_in = F.when(F.col("age") >= 75, 0.35).when(F.col("age") < 18, 0.20).otherwise(0.11)
    in_source = people.where(pd.unit("included") < p_in)
    recs = in_source.withColumn(
        "k", F.explode(F.sequence(F.lit(1), F.when(pd.unit("re_referral") < 0.03, 2).otherwise(1)))
    )
    d = _Draw(seed, F.lit("council"), F.col("person_id"), F.col("k"))
    # 25% of people moved x 60% of their council records => ~15% of records carry a different postcode.
    recs = _record_fields(recs, d, dict(
        nhs_sub=0.01, nhs_swap=0.005, nhs_missing=0.80, nickname=0.08, name_typo=0.03,
        given_missing=0.02, family_missing=0.01, dob_swap=0.01, dob_other=0.01, moved=0.6,
    ), validated_nhs=False)
    dob = _missing(F.format_string("%04d%02d%02d", "_y", "_m", "_d"), d, "dob", 0.02)
    sex = _missing(F.when(F.col("sex") == "M", F.lit("Male")).otherwise(F.lit("Female")), d, "sex", 0.01)
    children = [("Children in need", 6), ("Looked after child", 3), ("Safeguarding", 2), ("Direct payment", 1)]
    adults = [p for p in _SERVICE_TYPES if p[0] not in ("Children in need", "Looked after child")]
    service = F.when(F.col("age") < 18, _weighted_pick(children, d.unit("service"))).otherwise(
        _weighted_pick(adults, d.unit("service"))
    )
    seq = F.col("person_id") * 2 + (F.col("k") - 1)
    return recs.select(
        F.concat(F.lit("SC-"), _record_code(seed, "council", seq)).alias("case_ref"),
        F.col("_nhs").alias("nhs_number"),
        F.initcap("_given").alias("given_name"),
        F.initcap("_family").alias("family_name"),
        dob.alias("birth_date"),
        sex.alias("sex"),
        _missing(F.col("_pc"), d, "postcode", 0.02).alias("post_code"),
        service.alias("service_type"),
        _ethnic(d, 0.10, 0.02).alias("ethnic_group"),
        _imd(d, 0.02).alias("imd_quintile"),
        "person_id",
    )


RECORD_ID_COLUMNS = {"gp": "gp_patient_id", "hospital": "episode_id", "council": "case_ref"}


def generate_frames(
    spark: SparkSession, cfg: SynthConfig, *, partitions: int | None = None
) -> dict[str, DataFrame]:
    """Unwritten synthetic tables: gp, hospital, council, opt_outs and truth (source, record_id, person_id).

    partitions: optional starting partition count (e.g. cores x 2-4 for 10M+ people); rows do not depend on it.
    """
    people = population(spark, cfg, partitions=partitions)
    internal = {"gp": _gp(people, cfg.seed), "hospital": _hospital(people, cfg.seed), "council": _council(people, cfg.seed)}
    frames: dict[str, DataFrame] = {name: df.drop("person_id") for name, df in internal.items()}
    truth = None
    for name, df in internal.items():
        part = df.select(
            F.lit(name).alias("source"), F.col(RECORD_ID_COLUMNS[name]).alias("record_id"), F.col("person_id")
        )
        truth = part if truth is None else truth.unionByName(part)
    frames["truth"] = truth
    od = _Draw(cfg.seed, F.lit("opt_out"), F.col("person_id"))
    frames["opt_outs"] = people.where(od.unit("opted_out") < F.lit(cfg.opt_out_rate)).select("nhs_number")
    return frames


@dataclass(frozen=True)
class SynthResult:
    source_paths: dict[str, str]
    opt_outs_path: str
    truth_path: str


def generate(spark: SparkSession, cfg: SynthConfig, *, partitions: int | None = None) -> SynthResult:
    """Write gp, hospital, council and opt_outs under cfg.output and the truth table at cfg.truth_path."""
    frames = generate_frames(spark, cfg, partitions=partitions)
    root = cfg.output.rstrip("/")
    paths = {name: f"{root}/{name}" for name in SOURCES}
    for name in SOURCES:
        write_delta(frames[name], paths[name])
    opt_outs_path = f"{root}/opt_outs"
    write_delta(frames["opt_outs"], opt_outs_path)
    write_delta(frames["truth"], cfg.truth_path)
    return SynthResult(source_paths=paths, opt_outs_path=opt_outs_path, truth_path=cfg.truth_path)
