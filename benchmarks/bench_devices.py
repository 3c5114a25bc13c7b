"""Accuracy against time on device physics, and what the physics costs validate.

For each model: accuracy under `pcm` at 1 s, 1 h, 1 d, 1 mo (30 days), 1 y, with and without global drift
compensation, through 8-bit DAC/ADC converters (the analog twin), `--targets crossbar` (biases digital);
`reram-wan2022` at 1 s, 1 d, 2 d. Then validate's wall time under `pcm:1d` against `lognormal:0.6` on the
same session (target: within 1.5x), measured side by side.
With --adc-noise 0,0.005,0.02: only accuracy under `pcm:1d` with global compensation against the ADC's output
noise (a fraction of its bound), added to each model's row as `pcm_1d_global_adc_noise`.
With --global-only: only the compensated PCM row (`pcm_global`), the rest of each model's row kept; the row
records the calibration read it was measured with (`pcm_global_read`). --per-channel maps each output channel
to its own conductance range (`pcm:T,per_channel=1`) in the compensated PCM row (`pcm_global_per_channel`).
Usage: python benchmarks/bench_devices.py --models benchmarks/models/resnet20_cifar10.onnx[,...]
       --data examples/cifar_resnet20/work/test2000.npz [--samples 5] [--out results/devices.json]
       [--adc-noise 0,0.005,0.02,0.05]
"""
import argparse
import json
import time
from pathlib import Path

import ftcompile
from ftcompile.fileio import write_text_atomic
from ftcompile.runtime.devices.physics import DEFAULT_READ

HERE = Path(__file__).resolve().parent
TIMES = "1s,1h,1d,1mo,1y"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--samples", type=int, default=5)
    ap.add_argument("--bits", type=int, default=8)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "devices.json")
    ap.add_argument("--adc-noise", default=None, help="comma-separated ADC output noise levels (noise table only)")
    ap.add_argument("--global-only", action="store_true", help="only the compensated PCM row")
    ap.add_argument("--per-channel", action="store_true", help="the compensated PCM row with per-channel mapping")
    args = ap.parse_args()
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    for model in args.models.split(","):
        name = Path(model).stem
        if args.adc_noise is not None:
            row = results.setdefault(name, {})
            row["pcm_1d_global_adc_noise"] = table = {}
            for noise in (float(n) for n in args.adc_noise.split(",")):
                r = ftcompile.validate(model, args.data, drift="pcm:1d,comp=global", samples=args.samples,
                                       targets="crossbar", dac_bits=args.bits, adc_bits=args.bits, adc_noise=noise)
                table[f"{noise:g}"] = round(100 * r.stats.mean, 2)
                print(name, f"pcm:1d global, adc noise {noise:g}: {table[f'{noise:g}']}", flush=True)
            write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")
            continue
        common = dict(samples=args.samples, targets="crossbar", dac_bits=args.bits, adc_bits=args.bits)
        if args.global_only or args.per_channel:
            row = results.setdefault(name, {})
            key, drift = (("pcm_global_per_channel", "pcm:1s,per_channel=1") if args.per_channel
                          else ("pcm_global", "pcm:1s"))
            curve = ftcompile.sweep([model], args.data, times=TIMES, drift=drift, compensation="global", **common)
            row[key] = {p.drift: round(100 * p.mean, 2) for p in curve.curves[name]}
            row[f"{key}_read"] = DEFAULT_READ
            if "digital_clean" not in row:  # the loss from digital is read against it
                row["digital_clean"] = round(100 * ftcompile.validate(model, args.data, drift="lognormal:0", samples=1,
                                                                      targets="crossbar").clean, 2)
            print(name, f"{drift} comp=global:", row[key], "digital", row["digital_clean"], flush=True)
            write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")
            continue
        row = {"samples": args.samples, "bits": args.bits, "data": str(args.data)}
        for comp in ("none", "global"):
            curve = ftcompile.sweep([model], args.data, times=TIMES, drift="pcm:1s", compensation=comp, **common)
            row[f"pcm_{comp}"] = {p.drift: round(100 * p.mean, 2) for p in curve.curves[name]}
            print(name, f"pcm comp={comp}:", row[f"pcm_{comp}"], flush=True)
        reram = ftcompile.sweep([model], args.data, times="1s,1d,2d", drift="reram-wan2022:1s", **common)
        row["reram"] = {p.drift: round(100 * p.mean, 2) for p in reram.curves[name]}
        print(name, "reram:", row["reram"], flush=True)
        digital = ftcompile.validate(model, args.data, drift="lognormal:0", samples=1, targets="crossbar")
        row["digital_clean"] = round(100 * digital.clean, 2)
        timing = {}
        for spec in ("lognormal:0.6", "pcm:1d", "lognormal:0.6", "pcm:1d"):  # interleaved, twice
            t = time.perf_counter()
            ftcompile.validate(model, args.data, drift=spec, samples=args.samples, targets="crossbar")
            timing.setdefault(spec, []).append(time.perf_counter() - t)
        row["validate_seconds"] = {k: round(sum(v), 2) for k, v in timing.items()}
        row["pcm_over_lognormal"] = round(sum(timing["pcm:1d"]) / sum(timing["lognormal:0.6"]), 3)
        print(name, "validate pcm:1d / lognormal:0.6 =", row["pcm_over_lognormal"], flush=True)
        results[name] = row
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(args.out, json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
