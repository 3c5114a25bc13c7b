"""A chip a user can name: tiles, converters, read noise, device physics and drift compensation in one object.

``Chip`` is the description ``validate``, ``sweep``, ``gate``, ``harden``, ``export-twin`` and ``export-program``
all read (``--chip NAME[,key=value...]``). Its fields carry aihwkit's names (``forward.inp_res`` is ``inp_res``,
``mapping.max_input_size`` is ``max_input_size``), so that a user of aihwkit recognizes each one; the preset
``aihwkit-inference`` equals aihwkit 1.2.0's standard inference setting for hardware-aware training
(``simulator/presets/inference.py``: ``StandardHWATrainingPreset``), field by field (docs/chip.md has the table;
``benchmarks/chip_vs_aihwkit.py`` reads the fields out of aihwkit itself and compares them).

What each field does in ftcompile (all in the twin, ``passes/chip_twin.py``, and its torch twin,
``passes/chip_hooks.py``; per tile: a layer with more inputs than ``max_input_size`` rows spans several tiles):

- DAC: the tile's input clipped to its input range ``[-r, r]`` and rounded to steps of ``2 r / inp_res``.
- the analog product of the clipped input and the tile's conductances, with IR drop (``ir_drop``) and
  output-referred weight read noise (``w_noise``, ``w_noise_type``);
- output noise ``out_noise`` and the ADC (``out_res`` steps over ``+-out_bound``) in the tile's normalized
  units: inputs divided by ``r``, weights by their column's max ``|w|`` (``weight_scaling_omega`` = 1,
  ``weight_scaling_columnwise``);
- the drift compensation factor of the tile, digitally, after its ADC; partial sums of a layer's tiles added
  digitally, then the bias (``digital_bias``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ftcompile.errors import ConfigError
from ftcompile.units import format_time, parse_time

CLIP_TYPES = ("none", "fixed", "gaussian")       # aihwkit WeightClipType: NONE, FIXED_VALUE, LAYER_GAUSSIAN
REMAP_TYPES = ("none", "channel", "layer")      # aihwkit WeightRemapType: NONE, CHANNELWISE_, LAYERWISE_SYMMETRIC
W_NOISE_TYPES = ("none", "pcm_read")              # aihwkit WeightNoiseType: NONE, PCM_READ
COMPENSATIONS = ("none", "global", "column")    # aihwkit GlobalDriftCompensation, PerColumnDriftCompensation


@dataclass(frozen=True)
class Chip:
    """A crossbar chip. Defaults are aihwkit 1.2.0's ``StandardHWATrainingPreset`` (docs/chip.md: each field with
    its aihwkit name, value and source line). ``t``: the time since programming the chip is read at (seconds;
    None: the drift spec or ``--times`` gives it)."""

    name: str = "custom"
    # mapping (aihwkit MappingParameter)
    max_input_size: int = 512            # rows of a tile; 0: unbounded
    max_output_size: int = 0             # columns of a tile; 0: unbounded
    weight_scaling_omega: float = 1.0    # a column's max |w| maps to this (normalized) weight, i.e. to g_max
    weight_scaling_columnwise: bool = True
    digital_bias: bool = True
    learn_out_scaling: bool = True       # the column scales are learned: ftcompile learns the weights themselves
    out_scaling_columnwise: bool = True
    # forward (aihwkit IOParameters / PresetIOParameters)
    inp_bound: float = 1.0
    inp_res: int = 254                   # DAC steps over [-inp_bound, inp_bound] (0: no quantization)
    out_bound: float = 10.0              # ADC bound, normalized units
    out_res: int = 254                   # ADC steps over [-out_bound, out_bound] (0: no quantization)
    out_noise: float = 0.04              # std of the additive output noise, normalized units
    w_noise: float = 0.0175              # output-referred weight read noise
    w_noise_type: str = "pcm_read"
    ir_drop: float = 1.0                 # IR-drop scale (0: off)
    ir_drop_g_ratio: float = 1.0 / 0.35 / 5e-6  # wire conductance / g_max (aihwkit's default)
    bound_management: str = "none"
    noise_management: str = "constant"
    nm_thres: float = 1.0
    # pre_post.input_range (aihwkit InputRangeParameter)
    input_range: bool = True             # enable: the DAC clips to a per-tile input range r
    learn_input_range: bool = True
    init_value: float = 3.0
    init_from_data: int = 100            # batches; ftcompile: the calibration examples (see calibrate_chip)
    init_std_alpha: float = 3.0          # r = init_std_alpha * std of the tile's input
    decay: float = 0.001
    input_min_percentage: float = 0.95
    manage_output_clipping: bool = False
    output_min_percentage: float = 0.95
    gradient_scale: float = 1.0
    gradient_relative: bool = True
    # hardware-aware training (aihwkit WeightClipParameter, WeightRemapParameter)
    clip_type: str = "fixed"
    clip_fixed_value: float = 1.0
    clip_sigma: float = 2.5
    remap_type: str = "channel"
    remapped_wmax: float = 1.0
    # noise_model (aihwkit PCMLikeNoiseModel) and drift_compensation (GlobalDriftCompensation)
    noise_model: str = "pcm"
    g_max: float = 25.0
    prog_noise_scale: float = 1.0
    read_noise_scale: float = 1.0
    drift_scale: float = 1.0
    drift_compensation: str = "global"
    t: float | None = None

    def __post_init__(self) -> None:
        checks = [
            (self.max_input_size >= 0 and self.max_output_size >= 0,
             "max_input_size/max_output_size (tile=) must be >= 0"),
            (self.inp_res >= 0 and self.out_res >= 0, "inp_res/out_res must be >= 0 (0: no quantization)"),
            (self.inp_bound == 1.0, "inp_bound must be 1 (the input range scales inputs into [-1, 1])"),
            (self.out_bound > 0, "out_bound must be > 0"),
            (min(self.out_noise, self.w_noise, self.ir_drop) >= 0, "out_noise, w_noise and ir_drop must be >= 0"),
            (self.w_noise_type in W_NOISE_TYPES, f"w_noise_type must be one of {', '.join(W_NOISE_TYPES)}"),
            (self.weight_scaling_omega == 1.0, "weight_scaling_omega must be 1 (a column's max maps to g_max)"),
            (self.digital_bias, "digital_bias must be 1 (biases are added digitally after the ADC)"),
            (self.bound_management == "none", "bound_management must be none (iterative bound management is "
                                              "not modeled; the input range replaces it)"),
            (self.noise_management == "constant" and self.nm_thres == 1.0,
             "noise_management must be constant with nm_thres=1 (the input range replaces it)"),
            (self.input_range, "input_range must be on (the DAC range of every tile is its input range)"),
            (self.init_value > 0 and self.init_std_alpha > 0, "init_value and init_std_alpha must be > 0"),
            (not self.manage_output_clipping, "manage_output_clipping is not modeled; leave it off"),
            (self.clip_type in CLIP_TYPES, f"clip_type must be one of {', '.join(CLIP_TYPES)}"),
            (self.remap_type in REMAP_TYPES, f"remap_type must be one of {', '.join(REMAP_TYPES)}"),
            (self.noise_model in ("pcm", "reram-wan2022"), "noise_model must be pcm or reram-wan2022"),
            (self.g_max > 0, "g_max must be > 0 (uS)"),
            (self.drift_compensation in COMPENSATIONS, f"drift_compensation must be one of {', '.join(COMPENSATIONS)}"),
            (self.t is None or self.t >= 0, "t must be a time >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(f"chip {self.name}: {message}.")

    # --- the device ----------------------------------------------------------------------------------------
    def device(self, t: float):
        """The chip's devices read ``t`` seconds after programming: PCM (or ReRAM) per tile, a column's max ``|w|``
        at ``g_max`` (``weight_scaling_columnwise``), with the chip's drift compensation."""
        from ftcompile.runtime.devices.models import PCMDrift, ReRAMDrift

        if self.noise_model == "pcm":
            return PCMDrift(float(t), g_max=self.g_max, prog_scale=self.prog_noise_scale,
                            drift_scale=self.drift_scale, read_scale=self.read_noise_scale,
                            comp=self.drift_compensation, per_channel=self.weight_scaling_columnwise)
        return ReRAMDrift(float(t), g_max=self.g_max, scale=self.prog_noise_scale,
                          per_channel=self.weight_scaling_columnwise)

    def drift(self, spec=None):
        """The weight drift the chip is read under. ``spec`` None: the chip's device at its time ``t``; a bare device
        term with a time only (``pcm:1y``): the chip's device at that time (with the chip's ``g_max``, mapping and
        compensation); anything else (``lognormal:0.3``, ``pcm:1y,comp=none``): that drift as written, per tile."""
        from ftcompile.runtime.drift import DriftModel, parse_drift

        if spec is None:
            if self.t is None:
                raise ConfigError(f"chip {self.name}: give the time since programming, e.g. --drift "
                                  f"{self.noise_model}:1d, --times 1s,1d,1y (sweep) or --chip {self.name},t=1d.")
            return self.device(self.t)
        if isinstance(spec, DriftModel) and not isinstance(spec, str):
            return spec
        text = str(spec).strip()
        name, _, rest = text.partition(":")
        if name == self.noise_model and rest and "," not in rest and ":" not in rest:
            return self.device(parse_time(rest, what=f"{name} time"))
        return parse_drift(text)

    def with_time(self, t: float | None) -> "Chip":
        return dataclasses.replace(self, t=t)

    # --- words -----------------------------------------------------------------------------------------------
    def describe(self) -> str:
        tile = f"{self.max_input_size or 'unbounded'} rows" + (f" x {self.max_output_size} columns"
                                                                if self.max_output_size else "")
        noise = ", ".join(f"{k} {getattr(self, k):g}" for k in ("out_noise", "w_noise", "ir_drop") if getattr(self, k))
        return (f"chip {self.name}: tiles of {tile}, DAC {self.inp_res} steps, ADC {self.out_res} steps over "
                f"+-{self.out_bound:g}" + (f", {noise}" if noise else "") + f", {self.noise_model} g_max "
                f"{self.g_max:g} uS, {self.drift_compensation} drift compensation per tile")

    def spec(self) -> str:
        """A spec ``parse_chip`` reads back: the preset's name and every field that differs from it."""
        base = PRESETS.get(self.name, Chip())
        diff = [f"{f.name}={_format(getattr(self, f.name), f.name)}" for f in dataclasses.fields(self)
                if f.name != "name" and getattr(self, f.name) != getattr(base, f.name)]
        return ",".join([self.name if self.name in PRESETS else "custom", *diff])

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _format(value, field: str) -> str:
    if field == "t" and value is not None:
        return format_time(value)
    if isinstance(value, bool):
        return "1" if value else "0"
    return f"{value:g}" if isinstance(value, float) else str(value)


PRESETS = {"aihwkit-inference": Chip(name="aihwkit-inference")}
ALIASES = {"tile": "max_input_size x max_output_size (tile=512 or tile=512x256)", "t": "time since programming"}


def parse_chip(spec: "str | Chip | None") -> "Chip | None":
    """``aihwkit-inference``, optionally with ``key=value`` overrides: ``aihwkit-inference,tile=256,out_noise=0,t=1y``.
    ``tile=ROWS[xCOLS]`` sets ``max_input_size`` (and ``max_output_size``); ``t`` is a time (``1d``)."""
    if spec is None or isinstance(spec, Chip):
        return spec
    items = [s.strip() for s in str(spec).split(",") if s.strip()]
    if not items or "=" in items[0]:
        raise ConfigError(f"--chip {spec!r}: start with a preset name ({', '.join(PRESETS)}), then key=value "
                          "overrides, e.g. aihwkit-inference,tile=256,t=1y.")
    base = PRESETS.get(items[0])
    if base is None and items[0] != "custom":
        raise ConfigError(f"--chip {items[0]!r} is unknown; use {', '.join(PRESETS)} (docs/chip.md).")
    chip = base or Chip()
    fields = {f.name: f for f in dataclasses.fields(Chip)}
    changes: dict = {}
    for item in items[1:]:
        key, eq, value = (s.strip() for s in item.partition("="))
        if not eq:
            raise ConfigError(f"--chip {spec!r}: {item!r} is not key=value.")
        if key == "tile":
            rows, _, cols = value.lower().partition("x")
            changes["max_input_size"] = _typed("tile rows", rows, int)
            if cols:
                changes["max_output_size"] = _typed("tile columns", cols, int)
        elif key == "t":
            changes["t"] = parse_time(value, what="--chip t")
        elif key in fields and key != "name":
            default = getattr(Chip(), key)
            kind = type(default) if default is not None else float
            changes[key] = _typed(key, value, kind)
        else:
            known = ", ".join([*ALIASES, *(f for f in fields if f != "name")])
            raise ConfigError(f"--chip {spec!r}: unknown field {key!r}; use one of {known}.")
    return dataclasses.replace(chip, **changes)


def _typed(key: str, value: str, kind: type):
    try:
        if kind is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError
            return value.lower() in ("1", "true", "yes")
        if kind is int:
            number = float(value)
            if not number.is_integer():  # tile=3.7 is a typo, not 3 rows
                raise ValueError
            return int(number)
        return kind(value)
    except ValueError:
        what = "a whole number" if kind is int else kind.__name__
        raise ConfigError(f"--chip {key}={value!r} must be {what}.") from None


def split_sizes(size: int, max_size: int) -> tuple[int, ...]:
    """``size`` cut into the fewest pieces of at most ``max_size``, as equal as possible (the first ones one larger):
    aihwkit's ``TileModuleArray.get_split_sizes`` (1,100 rows on 512-row tiles: 367, 367, 366). 0: one piece."""
    return channel_split(size, 1, max_size)


def channel_split(channels: int, kernel: int, max_rows: int) -> tuple[int, ...]:
    """Input channels per row tile for a layer of ``channels`` inputs of ``kernel`` rows each (a convolution's
    kernel area; 1 for a matrix): a kernel window is never cut, so a tile holds whole channels; the fewest tiles
    whose channels, split as ``split_sizes`` splits, fit ``max_rows``. Equal to aihwkit's split of the
    ``channels * kernel`` rows whenever that falls on channel boundaries (a 3x3 convolution over 64 channels: two
    tiles of 32 channels, 288 rows, in both)."""
    if max_rows <= 0 or channels * kernel <= max_rows:
        return (channels,)
    if kernel > max_rows:
        raise ConfigError(f"a kernel window of {kernel} rows does not fit a tile of {max_rows} rows; give a larger "
                          "tile (--chip ...,tile=N).")
    n = -(-channels * kernel // max_rows)
    while -(-channels // n) * kernel > max_rows:
        n += 1
    base, extra = divmod(channels, n)
    return tuple(base + (i < extra) for i in range(n))
