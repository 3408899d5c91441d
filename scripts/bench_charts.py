"""Bar charts for docs/benchmarks.md, as SVG text drawn by hand (imported by
scripts/bench_report.py). Each scenario is a group of bars, one per server,
scaled to the group's largest bar (the scenarios differ by orders of
magnitude) with every bar's value written beside it. Colours are CSS
classes with a light and a dark palette chosen by prefers-color-scheme, the
palette of the load tool's own charts (tools/src/load/chart.rs)."""

from xml.sax.saxutils import escape

STYLE = (
    ":root{color-scheme:light dark;--bg:#ffffff;--fg:#1d1f23;--muted:#5f6670;--grid:#d9dce1;"
    "--c0:#1f6fd1;--c1:#d1471f;--c2:#1f9e55}"
    "@media (prefers-color-scheme:dark){:root{--bg:#15171b;--fg:#e4e6ea;--muted:#9aa1ab;"
    "--grid:#343943;--c0:#6cb2ff;--c1:#ff8a66;--c2:#5fd68f}}"
    "svg{background:var(--bg);font:12px sans-serif}text{fill:var(--fg)}"
    ".muted{fill:var(--muted)}.title{font-size:14px;font-weight:bold}"
    ".grid{stroke:var(--grid)}.s0{fill:var(--c0)}.s1{fill:var(--c1)}.s2{fill:var(--c2)}"
)

WIDTH = 760
LABEL_W = 230
BAR_H = 14
GAP = 12


def bars(title, unit, servers, groups, digits=0):
    """`groups` is [(scenario label, [value or None per server])]; returns
    the chart as a standalone SVG document."""
    top = 56
    height = top + sum(len(servers) * BAR_H + GAP for _ in groups) + 34
    plot_w = WIDTH - LABEL_W - 110
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n'
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
           f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{escape(title)}">'
           f'<style>{STYLE}</style><title>{escape(title)}</title>'
           f'<text class="title" x="12" y="20">{escape(title)}</text>']
    x = 12
    for i, server in enumerate(servers):
        out.append(f'<rect class="s{i % 3}" x="{x}" y="30" width="12" height="12"/>'
                   f'<text x="{x + 16}" y="40">{escape(server)}</text>')
        x += 30 + 7 * len(server)
    y = top
    for label, values in groups:
        known = [v for v in values if v is not None]
        biggest = max(known) if known else 0
        out.append(f'<text x="{LABEL_W - 8}" y="{y + len(servers) * BAR_H / 2 + 4:.1f}" '
                   f'text-anchor="end">{escape(label)}</text>')
        out.append(f'<line class="grid" x1="{LABEL_W}" y1="{y - 2}" x2="{LABEL_W}" '
                   f'y2="{y + len(servers) * BAR_H}"/>')
        for i, value in enumerate(values):
            if value is None:
                out.append(f'<text class="muted" x="{LABEL_W + 4}" y="{y + BAR_H - 3}">'
                           f'not run</text>')
            else:
                w = plot_w * value / biggest if biggest else 0
                out.append(f'<rect class="s{i % 3} bar" data-server="{escape(servers[i])}" '
                           f'data-value="{value}" x="{LABEL_W}" y="{y}" width="{w:.1f}" '
                           f'height="{BAR_H - 2}"/>'
                           f'<text x="{LABEL_W + w + 4:.1f}" y="{y + BAR_H - 3}">'
                           f'{value:,.{digits}f}</text>')
            y += BAR_H
        y += GAP
    out.append(f'<text class="muted" x="12" y="{height - 12}">{escape(unit)}; each scenario '
               f'is scaled to its own largest bar</text></svg>')
    return "".join(out)
