"""The jars an offline (air-gapped) install needs: Delta's, resolved with their dependencies by the
Ivy that ships inside pyspark, as a Spark session would at start; and Splink's similarity jar,
which ships inside Splink's wheel. `make bundle` writes them to dist/bundle/jars; inside the TRE
`spark.jars_dir` names that directory and sessions load them with no Ivy resolution at all.

    python -m tre_link.platform.bundle_jars OUT_DIR                       # from Maven Central
    python -m tre_link.platform.bundle_jars OUT_DIR --ivy-cache ~/.ivy2.5.2/cache   # from a local Ivy cache only
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tre_link.platform.errors import EnvironmentProblem

# A repository made of an existing Ivy cache (Spark's: ~/.ivy2.5.2/cache): nothing is fetched.
CACHE_ONLY_SETTINGS = """<ivysettings>
  <settings defaultResolver="ivy-cache"/>
  <caches defaultCacheDir="{work}/cache"/>
  <resolvers>
    <filesystem name="ivy-cache">
      <ivy pattern="{cache}/[organisation]/[module]/ivy-[revision].xml"/>
      <artifact pattern="{cache}/[organisation]/[module]/[type]s/[artifact]-[revision](-[classifier]).[ext]"/>
    </filesystem>
  </resolvers>
</ivysettings>
"""


# The module Spark's Ivy resolves for spark.jars.packages: runtime dependencies, less Scala's library
# and Spark's own modules, which are on Spark's classpath already (Spark's MavenUtils does the same).
CALLER_MODULE = """<ivy-module version="2.0">
  <info organisation="tre-link" module="offline-jars"/>
  <configurations><conf name="default"/></configurations>
  <dependencies>
{dependencies}
    <exclude org="*" module="scala-library"/>
    <exclude org="org\\.apache\\.spark" module="spark-.*" matcher="regexp"/>
  </dependencies>
</ivy-module>
"""


def ivy_jar() -> Path:
    import pyspark

    found = sorted((Path(pyspark.__file__).parent / "jars").glob("ivy-*.jar"))
    if not found:
        raise EnvironmentProblem("pyspark ships no Ivy jar (pyspark/jars/ivy-*.jar): reinstall pyspark")
    return found[-1]


def java() -> str:
    import os

    home = os.environ.get("JAVA_HOME")
    return os.path.join(home, "bin", "java") if home else (shutil.which("java") or "java")


def retrieve_delta_jars(dest: Path, *, ivy_cache: Path | None = None) -> list[Path]:
    """Delta's jars and their runtime dependencies (the Maven coordinate of the installed
    delta-spark, `platform.spark.delta_packages`), named as Spark's Ivy names them, into `dest`."""
    from tre_link.platform.spark import delta_packages

    dest.mkdir(parents=True, exist_ok=True)
    coordinates = [c.split(":") for c in delta_packages().split(",")]
    with tempfile.TemporaryDirectory(prefix="tre-link-ivy-") as work:
        module = Path(work) / "ivy.xml"
        module.write_text(CALLER_MODULE.format(dependencies="\n".join(
            f'    <dependency org="{g}" name="{a}" rev="{v}" conf="default->default(runtime)"/>' for g, a, v in coordinates)))
        cmd = [java(), "-jar", str(ivy_jar()), "-ivy", str(module), "-confs", "default",
               "-retrieve", f"{dest}/[organisation]_[artifact]-[revision](-[classifier]).[ext]"]
        if ivy_cache is not None:
            settings = Path(work) / "ivysettings.xml"
            settings.write_text(CACHE_ONLY_SETTINGS.format(work=work, cache=Path(ivy_cache).expanduser().resolve()))
            cmd += ["-settings", str(settings)]
        else:
            cmd += ["-cache", f"{work}/cache"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        missing = [":".join(c) for c in coordinates if not (dest / f"{c[0]}_{c[1]}-{c[2]}.jar").is_file()]
        if done.returncode != 0 or missing:
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-15:])
            raise EnvironmentProblem(f"could not resolve {', '.join(missing) or 'the Delta jars'} with Ivy:\n{tail}")
    return sorted(dest.glob("*.jar"))


def copy_splink_jar(dest: Path) -> Path:
    from splink.backends.spark import similarity_jar_location

    source = Path(similarity_jar_location())
    dest.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy2(source, dest / source.name))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="directory to write the jars to")
    parser.add_argument("--ivy-cache", type=Path, help="resolve only from this Ivy cache (no network)")
    args = parser.parse_args(argv)
    jars = retrieve_delta_jars(args.out, ivy_cache=args.ivy_cache) + [copy_splink_jar(args.out)]
    print(f"{len(jars)} jars in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
