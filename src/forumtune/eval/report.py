"""report.html: one self-contained page (images embedded) that shows what the fine-tune changed."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from jinja2 import Environment

TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>forumtune report: {{ name }}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2rem; } .note { color: #8a5a00; background: #fff6e0; padding: .5rem .8rem; }
table { border-collapse: collapse; margin: 1rem 0; width: 100%; }
th, td { border: 1px solid #ccc; padding: .4rem .6rem; vertical-align: top; text-align: left; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.answer { white-space: pre-wrap; font-size: .9rem; } img { max-width: 100%; }
</style></head><body>
<h1>forumtune report: {{ name }}</h1>
<p>base model <code>{{ base_model }}</code></p>
{% if note %}<p class="note">{{ note }}</p>{% endif %}
<h2>Loss</h2>
<img id="loss-curve" alt="train and eval loss curves" src="data:image/png;base64,{{ loss_png }}">
<table id="metrics"><tr><th>model</th><th>eval loss</th><th>perplexity</th></tr>
{% for row in metrics %}<tr><td>{{ row.model }}</td><td class="num">{{ "%.4f"|format(row.loss) }}</td>
<td class="num">{{ "%.2f"|format(row.perplexity) }}</td></tr>{% endfor %}</table>
<h2>Data</h2>
<table id="data-stats">{% for key, value in data_stats.items() %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
<h2>Answers to held-out questions</h2>
<p>{{ generation_settings }}</p>
<table id="samples"><tr><th>question</th><th>forum's answer</th><th>base model</th><th>fine-tuned</th></tr>
{% for s in samples %}<tr><td class="answer">{{ s.question }}</td><td class="answer">{{ s.reference }}</td>
<td class="answer">{{ s.base }}</td><td class="answer">{{ s.tuned }}</td></tr>{% endfor %}</table>
<h2>Training</h2>
<table id="training">{% for key, value in training.items() %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
<h2>Config</h2><pre>{{ config_yaml }}</pre>
</body></html>
"""


def embed_png(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode("ascii")


def render_report(out_html: Path, **context: Any) -> Path:
    """Write the report; `context` fills TEMPLATE (name, metrics, samples, data_stats, training, ...)."""
    html = Environment(autoescape=True).from_string(TEMPLATE).render(**context)
    out_html.write_text(html, encoding="utf-8")
    return out_html
