"""Synthetic UK cross-sectoral sources, opt-outs and a truth table, for the demo, tests and bench."""

from tre_link.synth.generator import SynthResult, generate, generate_frames

__all__ = ["SynthResult", "generate", "generate_frames"]
