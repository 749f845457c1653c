"""tre-link: record linkage for trusted research environments.

    from tre_link import TreLink, load_config

`TreLink` (tre_link.api) is the public API. It is imported on first use, so `import tre_link`
(and the CLI's start) stays quick.
"""

__version__ = "0.1.0"
__all__ = ["TreLink", "load_config", "__version__"]


def __getattr__(name: str):
    if name == "TreLink":
        from tre_link.api import TreLink

        return TreLink
    if name == "load_config":
        from tre_link.platform.config import load_config

        return load_config
    raise AttributeError(f"module 'tre_link' has no attribute {name!r}")
