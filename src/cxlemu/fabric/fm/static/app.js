// cxlemu fabric manager page: reads /v1/status and /v1/capacity, draws the rack.
"use strict";
const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"];
function human(n) {
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return (Math.round(n * 100) / 100) + " " + u[i];
}
function el(tag, attrs, text) {
  const e = document.createElement(tag);
  for (const k in (attrs || {})) e.setAttribute(k, attrs[k]);
  if (text !== undefined) e.textContent = text;
  return e;
}
async function load() {
  const st = await (await fetch("/v1/status")).json();
  const cap = await (await fetch("/v1/capacity")).json();
  document.getElementById("rack").textContent = st.rack;
  document.getElementById("summary").textContent =
    "pool: " + human(st.pool_bytes_free) + " free of " + human(st.pool_bytes_total) +
    " · " + st.hosts.length + " hosts · " + st.pending.length + " pending";
  const color = {};
  st.hosts.forEach((h, i) => { color[h.name] = COLORS[i % COLORS.length]; });
  // appliances: capacity bar
  const devs = document.getElementById("devices"); devs.replaceChildren();
  for (const d of st.devices) {
    devs.appendChild(el("div", {"class": "device", "data-name": d.name},
      d.name + ": " + human(d.capacity) + ", " + human(d.free) + " free, " + d.extents + " extents, heads: " +
      d.heads.map(h => h.index + "→" + h.host).join(", ")));
    const bar = el("div", {"class": "bar"});
    const used = d.capacity - d.free;
    bar.appendChild(el("div", {"class": "seg", "style": "left:0;width:" + (100 * used / d.capacity) + "%;background:#555"}));
    devs.appendChild(bar);
  }
  // extents by host: a DPA map of the first appliance
  const map = document.getElementById("map"); map.replaceChildren();
  const total = st.devices.length ? st.devices[0].capacity : 1;
  const bar = el("div", {"class": "bar", "id": "dpa-map"});
  const legend = el("div", {"class": "legend"});
  const sharers = {};             // a shared extent: one band per host that maps it
  for (const h of st.hosts) for (const a of h.allocations) if (a.shared)
    for (const [dpa] of a.extents) (sharers[dpa] = sharers[dpa] || []).push(h.name);
  for (const h of st.hosts) {
    const sw = el("span"); const box = el("i", {"class": "sw", "style": "background:" + color[h.name]});
    sw.appendChild(box); sw.appendChild(document.createTextNode(h.name)); legend.appendChild(sw);
    for (const a of h.allocations) for (const [dpa, len] of a.extents) {
      const s = el("div", {"class": "seg extent", "title": h.name + " " + a.tag + " " + human(len),
        "data-host": h.name, "style": "left:" + (100 * dpa / total) + "%;width:" + Math.max(0.3, 100 * len / total) +
        "%;background:" + color[h.name] + (a.shared ? ";height:" + (100 / sharers[dpa].length) + "%;top:" +
        (100 * sharers[dpa].indexOf(h.name) / sharers[dpa].length) + "%" : "")});
      bar.appendChild(s);
    }
  }
  map.appendChild(bar); map.appendChild(legend);
  // hosts table
  const tb = document.querySelector("#hosts tbody"); tb.replaceChildren();
  for (const h of st.hosts) {
    if (!h.allocations.length) {
      const tr = el("tr", {"class": "host", "data-host": h.name}); tr.appendChild(el("td", {}, h.name));
      tr.appendChild(el("td", {"colspan": "6"}, "no pool memory")); tb.appendChild(tr);
    }
    for (const a of h.allocations) {
      const tr = el("tr", {"class": "host alloc", "data-host": h.name, "data-tag": a.tag});
      for (const v of [h.name, a.tag, human(a.bytes), a.shared ? "yes" : "no", a.dax || "", a.hpa == null ? "" : "0x" + a.hpa.toString(16), a.mode || ""])
        tr.appendChild(el("td", {}, v));
      tb.appendChild(tr);
    }
  }
  // capacity over time
  const svg = document.getElementById("capacity"); svg.replaceChildren();
  const W = 720, H = 180, ns = "http://www.w3.org/2000/svg";
  if (cap.length) {
    const maxv = cap[0].total || 1;
    const pts = cap.map((s, i) => [cap.length === 1 ? W / 2 : (i * (W - 20)) / (cap.length - 1) + 10,
                                   H - 10 - ((H - 20) * s.free) / maxv]);
    const pl = document.createElementNS(ns, "polyline");
    pl.setAttribute("points", pts.map(p => p[0].toFixed(1) + "," + p[1].toFixed(1)).join(" "));
    pl.setAttribute("fill", "none"); pl.setAttribute("stroke", "#1f77b4"); pl.setAttribute("stroke-width", "2");
    pl.setAttribute("id", "free-line"); pl.setAttribute("data-samples", String(cap.length));
    svg.appendChild(pl);
    const lab = document.createElementNS(ns, "text");
    lab.setAttribute("x", "12"); lab.setAttribute("y", "14"); lab.setAttribute("font-size", "11");
    lab.textContent = "free: " + human(cap[0].free) + " → " + human(cap[cap.length - 1].free) +
      " (" + cap.length + " samples, top = " + human(maxv) + ")";
    svg.appendChild(lab);
  }
  const wl = document.getElementById("warnings"); wl.replaceChildren();
  for (const w of st.warnings) wl.appendChild(el("li", {"class": "warning"}, w));
  document.body.setAttribute("data-ready", "1");
}
load().catch(e => { document.getElementById("summary").textContent = "error: " + e; document.body.setAttribute("data-ready", "error"); });
setInterval(() => load().catch(() => {}), 5000);
