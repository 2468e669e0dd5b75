"""Summary lines for what run extensions add to a result (DAMOS statistics,
allocator accounting): plain text for ``cxlemu run`` without ``--json``."""

from __future__ import annotations


def _sz(n: int) -> str:
    from cxlemu.util.units import human_size
    return human_size(int(n))


def summary_lines(extra: dict) -> list[str]:
    out: list[str] = []
    d = extra.get("damos")
    if d:
        out.append(f"  DAMOS ({d['setup']}):")
        for k in d["kdamonds"]:
            for s in k["schemes"]:
                tgt = f" -> node {s['target_nid']}" if s["target_nid"] >= 0 else ""
                out.append(f"    kdamond {k['kdamond']} ({k['ops']}, sample {k['sample_us']} us): {s['action']}{tgt}: "
                           f"tried {s['nr_tried']:,} regions ({_sz(s['sz_tried'])}), applied to {_sz(s['sz_applied'])}"
                           f", quota exceeded {s['qt_exceeds']} times")
    a = extra.get("allocator")
    if a:
        out.append(f"  allocator {a['kind']} ({a['config'] or 'defaults'}):")
        for p in a["processes"]:
            pools = ", ".join(f"{k} {_sz(v)}" for k, v in p.get("pools", {}).items())
            out.append(f"    {p.get('summary', '')}{': ' if pools else ''}{pools}")
    return out
