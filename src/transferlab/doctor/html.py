"""``doctor.html``: one self-contained page (inline CSS, thumbnails embedded as base64 JPEG)
showing every duplicate group, likely label error and outlier side by side with its labels,
splits and scores, after the summary and the warnings."""
from __future__ import annotations

import base64
import html
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .._atomic import atomic_write_text
from ..data import open_image

from .render import _short, summary

THUMB = 112

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1400px; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.6em; }
.note { color: #555; } code { background: #f3f3f3; padding: 0 .2em; }
.warn { color: #8a5300; } .info { color: #555; }
.group { border: 1px solid #ddd; border-radius: 6px; padding: .5em; margin: .6em 0; display: inline-block;
         vertical-align: top; margin-right: .6em; background: #fafafa; }
.group .head { font-size: 12px; margin-bottom: .3em; }
.tag { display: inline-block; border-radius: 3px; padding: 0 .4em; font-size: 11px; margin-right: .3em; color: #fff; }
.tag.cross-split { background: #c0392b; } .tag.conflicting-labels { background: #8e44ad; }
.tag.within-class { background: #7f8c8d; } .tag.exact { background: #2c3e50; }
figure { display: inline-block; margin: 0 .3em 0 0; width: 118px; vertical-align: top; font-size: 11px; }
figure img { width: 112px; height: 112px; object-fit: contain; background: #eee; display: block; }
figcaption { overflow-wrap: anywhere; } .lab { font-weight: 600; } .split { color: #666; }
.arrow { font-size: 12px; margin: .2em 0; } .bad { color: #c0392b; } .good { color: #1e8449; }
table.summary td { padding: 2px 10px 2px 0; }
"""


def _thumb(path: str, size: int = THUMB) -> str | None:
    try:
        img = open_image(path)
    except Exception:  # noqa: BLE001 - a thumbnail is optional
        return None
    img.thumbnail((size, size))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=82)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(report: dict, thumbs: dict, path: str | None, label: str = "", split: str = "", extra: str = "") -> str:
    e = html.escape
    if not path:
        return ""
    t = thumbs.get(path)
    img = (f'<img src="data:image/jpeg;base64,{t}" alt="{e(label)}" title="{e(path)}">' if t
           else f'<div class="missing" title="{e(path)}">(unreadable)</div>')
    return (f"<figure>{img}<figcaption><span class='lab'>{e(label)}</span> <span class='split'>{e(split)}</span>"
            f"<br>{e(_short(report, path))}{extra}</figcaption></figure>")


def write_html(report: dict, path: str | os.PathLike, *, max_groups: int = 200, max_issues: int = 150,
               max_review: int = 60, max_outliers: int = 60) -> Path:
    """Write the doctor's HTML page for ``report`` (the dict of :func:`diagnose`); returns its path."""
    e = html.escape
    path = Path(path)
    groups = report["duplicates"][:max_groups]
    issues = report["label_issues"][:max_issues]
    review = report.get("label_review", [])[:max_review]
    outliers = report["outliers"][:max_outliers]
    wanted = {f["path"] for d in groups for f in d["files"]} | {r["path"] for r in issues + review}
    wanted |= {r["path"] for r in outliers} | {r["nearest"] for r in outliers if r.get("nearest")}
    wanted = sorted(wanted)
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        thumbs = dict(zip(wanted, pool.map(_thumb, wanted)))

    s, st = report["summary"], report["settings"]
    head = "".join(f"<li>{e(line)}</li>" for line in summary(report) if not line.startswith("warning:"))
    settings = (f"backbone <code>{e(st['backbone'])}</code> at {st['input_size']} px ({e(st['precision'])}); "
                f"near-duplicates: cosine similarity &ge; <b>{st['threshold']:g}</b> (<code>--threshold</code>)"
                + (f", or the ratio test (distance &le; {st['ratio']:g}&times; that of the {st['ratio_reference']}th "
                   f"nearest image, similarity &ge; {st['ratio_floor']:g}; <code>--ratio</code>)" if st.get("ratio") else "")
                + (f", or pHash/dHash within {st['hash_distance'][0]}/{st['hash_distance'][1]} bits with similarity "
                   f"&ge; {st.get('hash_floor', 0.6):g}" if st.get("hash_distance") else "")
                + f"; label errors: {st['folds']}-fold out-of-fold probabilities + cleanlab; outliers: robust z &ge; "
                  f"{st['outlier_z']:g}")
    warn = "".join(f"<li class='{e(w['severity'])}'>{e(w['severity'])}: {e(w['message'])}</li>" for w in report["warnings"])

    def group_html(d: dict) -> str:
        tags = "".join(f"<span class='tag {e(k)}'>{e(k)}</span>" for k in d["kinds"])
        tags += "<span class='tag exact'>identical files</span>" if d["exact"] else ""
        how = ("same bytes" if d["exact"] else
               f"{e(' + '.join(d['signals']))}; lowest pair similarity {d['similarity']}")
        figs = "".join(_figure(report, thumbs, f["path"], f["label"], f["split"]) for f in d["files"][:12])
        more = f"<div class='note'>... and {d['size'] - 12} more</div>" if d["size"] > 12 else ""
        return f"<div class='group' id='group-{d['id']}'><div class='head'>{tags} #{d['id']}: {how}</div>{figs}{more}</div>"

    sections = []
    for kind, title, why in (
            ("cross-split", "Duplicates across splits (leakage)",
             "the same picture in train and val/test: the model is tested on what it trained on"),
            ("conflicting-labels", "Duplicates with conflicting labels", "the same picture filed under different classes"),
            ("within-class", "Duplicates within a class", "copies that add weight, not information")):
        items = [d for d in groups if kind in d["kinds"] and (kind != "within-class" or d["kinds"] == ["within-class"])]
        if kind == "conflicting-labels":
            items = [d for d in items if "cross-split" not in d["kinds"]]
        total = sum(1 for d in report["duplicates"] if kind in d["kinds"])
        if kind == "conflicting-labels" and len(items) < total:
            why += f" ({total - len(items)} of them also across splits, shown above)"
        sections.append(f"<h3>{e(title)}: {total}</h3><p class='note'>{e(why)}</p>"
                        + ("".join(group_html(d) for d in items) or "<p>none</p>"))

    def label_html(rows: list) -> str:
        return "".join(
            f"<div class='group'>{_figure(report, thumbs, r['path'], r['given'], r['split'])}"
            f"<div class='arrow'>given <span class='bad'>{e(r['given'])}</span> ({r['p_given']:.2f})<br>"
            f"suggested <span class='good'>{e(r['suggested'])}</span> ({r['p_suggested']:.2f})<br>score {r['score']:.3f}"
            + (f"<br>in duplicate group <a href='#group-{r['group']}'>#{r['group']}</a>" if r.get("group") is not None else "")
            + "</div></div>" for r in rows)

    outlier_html = "".join(
        f"<div class='group'>{_figure(report, thumbs, r['path'], r['label'], r['split'])}"
        + (_figure(report, thumbs, r['nearest'], 'nearest', '', f"<br>similarity {r['nearest_similarity']}")
           if r.get("nearest") else "")
        + f"<div class='arrow'>{e(r['reason'])}<br>z {r['score']:.1f}</div></div>" for r in outliers)
    rule = report.get("label_rule") or {}
    precision = (f" (estimated precision ~{rule['estimated_precision']:.2f})"
                 if s["label_issues"] and rule.get("estimated_precision") is not None else "")
    if rule.get("threshold") is not None:
        rule_note = (f"flagged: label quality below {rule['threshold']:g}, where about {rule['expected_false']:g} of "
                     f"them are expected to be correctly labelled (the probe disagrees with "
                     f"{rule['disagreements']} given labels)")
    else:
        rule_note = (f"nothing flagged: no quality threshold keeps the estimated precision at "
                     f"{rule.get('target_precision', 0.7):g} or more (the probe disagrees with "
                     f"{rule.get('disagreements', 0)} given labels, about as many as its own mistakes explain)")
    def clip(shown: int, total: int, what: str) -> str:
        return f"<p class='note'>showing {shown} of {total} {what}; all are in doctor.json</p>" if total > shown else ""

    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>transferlab doctor: {e(report['root'])}</title>
<style>{_CSS}</style></head><body>
<h1>Data doctor</h1>
<p><code>{e(report['root'])}</code> &mdash; {s['images']} images, {len(report['classes'])} classes
(train {report['counts']['train']}, val {report['counts']['val']}, test {report['counts']['test']}).</p>
<ul>{head}</ul>
<p class="note">{settings}</p>
<h2 id="warnings">Checks</h2><ul>{warn or '<li>nothing to report</li>'}</ul>
<h2 id="duplicates">Duplicates: {s['duplicate_groups']} groups, {s['duplicate_images']} images</h2>
{clip(len(groups), s['duplicate_groups'], 'groups')}{''.join(sections)}
<h2 id="labels">Likely label errors: {s['label_issues']}{precision}</h2>
<p class="note">ranked by cleanlab's label quality (the out-of-fold probability of the given label), lowest first;
{e(rule_note)}</p>
{clip(len(issues), s['label_issues'], 'label issues')}{label_html(issues) or '<p>none</p>'}
<h3 id="review">To review: {s.get('label_review', 0)}</h3>
<p class="note">the rest of what cleanlab finds: images whose given label the probe doubts, too many of them
correctly labelled to act on without a look</p>
{clip(len(review), s.get('label_review', 0), 'images to review')}{label_html(review) or '<p>none</p>'}
<h2 id="outliers">Outliers: {s['outliers']}</h2>
<p class="note">images unlike anything in the dataset or in their class, each beside its nearest image</p>
{clip(len(outliers), s['outliers'], 'outliers')}{outlier_html or '<p>none</p>'}
</body></html>
"""
    atomic_write_text(path, page)
    return path
