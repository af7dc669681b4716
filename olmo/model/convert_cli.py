"""`olmo convert to-hf CHECKPOINT_DIR OUT_DIR` and `olmo convert from-hf HF_DIR OUT_DIR`."""

from __future__ import annotations

import argparse

from olmo.errors import OlmoError
from olmo.inputs import check_output


def _check_out_dir(out: str) -> None:
    """OUT_DIR must be creatable and empty: checked before any weights are read."""
    path = check_output(out, "OUT_DIR", is_dir=True)
    if path.is_dir() and any(path.iterdir()):
        raise OlmoError(f"{path}: already exists and is not empty; choose another output directory")


def to_hf(args: argparse.Namespace) -> int:
    from olmo.checkpoint.io import export_hf

    _check_out_dir(args.out_dir)
    model = export_hf(args.checkpoint_dir, args.out_dir)  # files checked against the marker
    print(
        f"converted {args.checkpoint_dir} → {args.out_dir} "
        f"(HF OlmoForCausalLM, {model.num_params():,} parameters)"
    )
    return 0


def from_hf(args: argparse.Namespace) -> int:
    from olmo.checkpoint.io import save_model
    from olmo.model.hf import load_hf

    _check_out_dir(args.out_dir)
    model = load_hf(args.hf_dir)
    out = save_model(model, args.out_dir)
    print(f"converted {args.hf_dir} → {out} (olmo checkpoint, {model.num_params():,} parameters)")
    return 0


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register `convert` (with `to-hf` and `from-hf`) on the main CLI's subparsers."""
    convert = subparsers.add_parser(
        "convert", help="convert model weights to/from Hugging Face transformers (OlmoForCausalLM)"
    )
    sub = convert.add_subparsers(dest="convert_command", metavar="{to-hf,from-hf}", required=True)
    p = sub.add_parser(
        "to-hf", help="olmo checkpoint dir → HF model dir (safetensors + config.json)"
    )
    p.add_argument("checkpoint_dir", metavar="CHECKPOINT_DIR")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.set_defaults(func=to_hf)
    p = sub.add_parser("from-hf", help="local HF model dir → olmo checkpoint dir")
    p.add_argument("hf_dir", metavar="HF_DIR")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.set_defaults(func=from_hf)
    return convert
