"""Device physics (PCM, ReRAM) behind the drift-spec syntax: ``pcm:1d``, ``reram-wan2022:2d``."""
from ftcompile.runtime.devices.models import PCMDrift, ReRAMDrift, parse_time  # noqa: F401
