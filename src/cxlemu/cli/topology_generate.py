"""``cxlemu topology generate``: write a valid topology of any size (see
:mod:`cxlemu.topology.generate` for the layout rules)."""

from __future__ import annotations

import argparse
import sys

from cxlemu.topology.generate import GenerateError, Spec, generate


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="cxlemu topology generate",
        description="Write a topology TOML with N Type 3 devices behind L levels of switches, spread over "
                    "host bridges and PCI segments, with one x1 window per host bridge and W-way "
                    "interleaved windows across host bridges.")
    p.add_argument("--devices", "-n", type=int, required=True, metavar="N", help="Type 3 devices")
    p.add_argument("--switch-levels", "-l", type=int, default=2, metavar="L",
                   help="levels of switches below each root port (default 2; 0: devices on root ports)")
    p.add_argument("--host-bridges", type=int, metavar="H", help="host bridges (default: one per 128 devices)")
    p.add_argument("--segments", type=int, metavar="S", help="PCI segments (default: one per host bridge)")
    p.add_argument("--root-ports", type=int, metavar="R", help="root ports per host bridge (default 2)")
    p.add_argument("--ways", type=int, metavar="W",
                   help="interleave ways of the cross-host-bridge windows (default: the largest valid <= H, 16)")
    p.add_argument("--device-size", default="1G", metavar="SIZE", help="capacity of each device (default 1G)")
    p.add_argument("--type", dest="device_type", choices=("volatile", "persistent"), default="volatile",
                   help="device capacity type (default volatile)")
    p.add_argument("--hdm-decoders", type=int, default=2, metavar="D", help="HDM decoders per device (default 2)")
    p.add_argument("--name", help="machine name in the TOML (default generated-N)")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    return p


def cmd_generate(argv: list[str]) -> int:
    parser = build_parser()
    a = parser.parse_args(argv)          # usage errors: argparse message, exit 2
    spec = Spec(devices=a.devices, switch_levels=a.switch_levels, host_bridges=a.host_bridges,
                segments=a.segments, root_ports=a.root_ports, ways=a.ways, device_size=a.device_size,
                device_type=a.device_type, hdm_decoders=a.hdm_decoders, name=a.name)
    try:
        text = generate(spec)
    except GenerateError as e:
        parser.error(f"argument {e.option}: {e.reason}")
    if a.output:
        try:
            with open(a.output, "w") as f:
                f.write(text)
        except OSError as e:
            print(f"cxlemu: {a.output}: {e.strerror}", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0
