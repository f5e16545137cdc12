"""The HTML of report.html (one run) and of the comparison of two runs. Self-contained: no external assets."""

LAYOUT = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %}</title>
<style>
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #222; line-height: 1.4; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 2px solid #eee; padding-bottom: .2rem; }
.note { color: #7a4f00; background: #fff6e0; padding: .5rem .8rem; border-radius: 4px; }
.muted { color: #666; font-size: .9rem; }
table { border-collapse: collapse; margin: .8rem 0; }
th, td { border: 1px solid #ccc; padding: .35rem .6rem; vertical-align: top; text-align: left; }
th { background: #f4f4f4; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.better { background: #e6f5e6; } td.worse { background: #fbe9e9; }
img.curves { max-width: 100%; border: 1px solid #ddd; }
.sample { border: 1px solid #ddd; border-radius: 6px; margin: 1rem 0; padding: .6rem .8rem; }
.sample h3 { font-size: 1rem; margin: .2rem 0 .6rem; white-space: pre-wrap; }
.answers { display: grid; grid-template-columns: repeat(3, 1fr); gap: .8rem; }
.answers h4 { margin: 0 0 .3rem; font-size: .85rem; color: #555; text-transform: uppercase; letter-spacing: .03em; }
.answer { white-space: pre-wrap; font-size: .9rem; background: #fafafa; padding: .4rem; border-radius: 4px;
          max-height: 22rem; overflow: auto; }
.flag { display: inline-block; background: #fbe9e9; color: #8b1a1a; border-radius: 3px; padding: 0 .35rem;
        margin: .2rem .2rem 0 0; font-size: .78rem; }
.score { display: inline-block; color: #555; font-size: .78rem; margin: .2rem .4rem 0 0; }
pre { background: #f7f7f7; padding: .6rem; overflow: auto; font-size: .8rem; }
</style></head><body>
{% block body %}{% endblock %}
</body></html>
"""

RUN_REPORT = """{% extends "layout.html" %}
{% block title %}forumtune report: {{ name }}{% endblock %}
{% block body %}
<h1>forumtune report: {{ name }}</h1>
<p class="muted">base model <code>{{ base_model }}</code> · {{ eval_examples }} held-out examples,
{{ eval_trained_tokens }} scored tokens</p>
{% if note %}<p class="note">{{ note }}</p>{% endif %}

<h2>Results</h2>
<table id="metrics"><tr><th>model</th><th>eval loss</th><th>perplexity</th><th>token F1</th><th>ROUGE-L</th>
{% if has_embedding %}<th>embedding similarity</th>{% endif %}<th>answers with an artifact</th></tr>
{% for row in metrics %}<tr data-model="{{ row.key }}"><th>{{ row.model }}</th>
<td class="num" data-value="{{ row.eval_loss }}">{{ "%.4f"|format(row.eval_loss) }}</td>
<td class="num" data-value="{{ row.perplexity }}">{{ "%.2f"|format(row.perplexity) }}</td>
<td class="num">{{ "%.3f"|format(row.token_f1) if row.token_f1 is not none else "–" }}</td>
<td class="num">{{ "%.3f"|format(row.rouge_l) if row.rouge_l is not none else "–" }}</td>
{% if has_embedding %}<td class="num">{{ "%.3f"|format(row.embedding_similarity) if row.embedding_similarity is not none else "–" }}</td>{% endif %}
<td class="num">{{ row.artifact_answers }}</td></tr>{% endfor %}</table>
<p class="muted">Eval loss: mean cross-entropy per answer token of the held-out split (prompt tokens masked,
as in training); perplexity = e<sup>loss</sup>. Lower is better. Reference metrics over {{ samples|length }}
generated answers. {{ embedding_note }}</p>
{% if preferences %}
<h2>Preferences</h2>
<table id="preferences"><tr><th>model</th><th>log-prob accuracy</th><th>per-token accuracy</th><th>reward accuracy</th><th>reference</th><th>reward margin</th></tr>
{% for row in preference_rows %}<tr data-model="{{ row.key }}"><th>{{ row.model }}</th>
<td class="num">{{ "%.1f%%"|format(100 * row.logprob) }}</td>
<td class="num">{% if row.per_token is not none %}{{ "%.1f%%"|format(100 * row.per_token) }}{% endif %}</td>
<td class="num">{% if row.reward is not none %}{{ "%.1f%%"|format(100 * row.reward) }}{% endif %}</td>
<td>{{ row.reference or "" }}</td>
<td class="num">{% if row.reference %}{{ "%.3f"|format(row.margin) }}{% endif %}</td></tr>{% endfor %}</table>
<p class="muted">{{ preferences.pairs }} held-out pairs of replies to one question, the one the community rated higher
first. Log-prob accuracy: share of pairs whose preferred answer has the higher summed log-probability; per-token
accuracy: the same with the mean log-probability per answer token (a sum favours the shorter answer). Reward
accuracy: share whose implicit reward beta × (log p<sub>model</sub> − log p<sub>reference</sub>) is higher for the
preferred answer (beta {{ preferences.beta }}, reference: {{ preferences.reference }}); margin: its mean difference.</p>
{% endif %}
{% if retrieval %}
<h2>Retrieval</h2>
{% if retrieval.questions %}{% set shown = retrieval.modes|list|last %}
<table id="retrieval"><tr><th>search</th><th>hit@1</th><th>hit@{{ retrieval.top_k }}</th><th>MRR</th></tr>
{% for mode, m in retrieval.modes.items() %}<tr data-mode="{{ mode }}"><th>{{ mode }}</th>
<td class="num" data-value="{{ m.hit_at_1 }}">{{ "%.0f%%"|format(100 * m.hit_at_1) }}</td>
<td class="num" data-value="{{ m.hit_at_k }}">{{ "%.0f%%"|format(100 * m.hit_at_k) }}</td>
<td class="num" data-value="{{ m.mrr }}">{{ "%.2f"|format(m.mrr) }}</td></tr>{% endfor %}</table>
<p class="muted">{{ retrieval.questions }} of the {{ retrieval.threads }} held-out questions are asked
again in another thread (eval.same_questions). Each is searched as chat searches it, its own thread left out:
hit@k is the share whose top k passages (chat.retrieval_top_k) include one from a thread that asks the same
question, MRR the mean of 1 / the rank of the first such passage (0 past rank {{ retrieval.depth }}).</p>
<table id="retrieval-questions"><tr><th>held-out question</th><th>asked again in</th>
{% for mode in retrieval.modes %}<th>{{ mode }} rank</th>{% endfor %}<th>top passages' threads ({{ shown }})</th></tr>
{% for s in retrieval.samples %}<tr><td>{{ s.title }}</td><td>{{ s.same_question|join("; ") }}</td>
{% for mode in retrieval.modes %}<td class="num">{{ s.ranks[mode] or "–" }}</td>{% endfor %}
<td>{{ s.top[shown]|join("; ") }}</td></tr>{% endfor %}</table>
{% else %}<p>No held-out question is asked again in another thread (eval.same_questions): retrieval was not checked.</p>{% endif %}
{% endif %}

<h2>Loss curves</h2>
<img class="curves" id="loss-curve" alt="train and eval loss curves" src="data:image/png;base64,{{ loss_png }}">
{% if checkpoints %}
<table id="checkpoints"><tr><th>checkpoint</th><th>eval loss</th><th>perplexity</th></tr>
{% for c in checkpoints %}<tr><td>step {{ c.step }}</td><td class="num" data-value="{{ c.eval_loss }}">{{ "%.4f"|format(c.eval_loss) }}</td>
<td class="num">{{ "%.2f"|format(c.perplexity) }}</td></tr>{% endfor %}</table>
{% else %}<p class="muted">No checkpoints were left in the run directory, so only the final adapter was measured.</p>{% endif %}

<h2>Artifacts in the answers</h2>
<table id="artifacts"><tr><th>check</th><th>forum's answers</th>{% for key, title in models %}<th>{{ title }}</th>{% endfor %}</tr>
{% for row in artifacts %}<tr><td>{{ row.label }}</td>
{% for key in ["forum"] + models|map("first")|list %}<td class="num {{ row.classes[key] }}">{{ row.cells[key] }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p class="muted">Share of answers in which each check fired. If the forum's own answers show an artifact, the
data taught it: clean it in the build stage. Evidence is shown under each answer below.</p>

<h2>Decoding</h2>
<table id="decoding"><tr><th>check</th>{% for title in decoding[0] %}<th>{{ title }}</th>{% endfor %}</tr>
{% for row in decoding[1] %}<tr><td>{{ row.label }}</td>{% for cell in row.cells %}<td class="num">{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p class="muted">Small models repeat themselves under plain greedy decoding; the answers above and below use
eval's decoding settings (eval.repetition_penalty, eval.no_repeat_ngram_size, eval.temperature), and
plain greedy figures are kept here so nothing is hidden (eval.greedy_baseline).</p>

<h2>Answers to held-out questions</h2>
<p class="muted">{{ generation_settings }}</p>
{% macro flags(found) %}{% for name, evidence in found.items() %}<span class="flag" title="{{ evidence }}">{{ short_labels[name] }}: {{ evidence|truncate(48) }}</span>{% endfor %}{% endmacro %}
{% for s in samples %}<div class="sample"><h3>{{ loop.index }}. {{ s.question }}</h3><div class="answers" style="grid-template-columns: repeat({{ 1 + models|length }}, 1fr)">
<div><h4>forum's answer</h4><div class="answer">{{ s.reference }}</div>
{{ flags(s.reference_flags) }}
</div>{% for key, title in models %}{% set answer = s.answers[key] %}
<div><h4>{{ title }}</h4><div class="answer">{{ answer.text }}</div>
{{ flags(answer.flags) }}
<span class="score">F1 {{ "%.2f"|format(answer.scores.token_f1) }}</span><span class="score">ROUGE-L {{ "%.2f"|format(answer.scores.rouge_l) }}</span>
{% if answer.scores.embedding_similarity is not none %}<span class="score">emb {{ "%.2f"|format(answer.scores.embedding_similarity) }}</span>{% endif %}
</div>{% endfor %}</div>
{% if "tuned_greedy" in s.answers %}<details class="greedy"><summary>fine-tuned, plain greedy</summary><div class="answer">{{ s.answers.tuned_greedy.text }}</div>
{{ flags(s.answers.tuned_greedy.flags) }}</details>{% endif %}
</div>{% endfor %}

<h2>What the reference metrics can and cannot tell</h2>
<p>{{ metric_limits }}</p>

<h2>Data</h2>
<table id="data-stats">{% for key, value in data_stats.items() %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}</table>

<h2>Timings and memory</h2>
<table id="timings">{% for label, value in timings %}<tr><th>{{ label }}</th><td>{{ value }}</td></tr>{% endfor %}</table>

<h2>Config</h2>
<table id="config-summary">{% for key, value in config_summary.items() %}<tr><th>{{ key }}</th><td>{{ value }}</td></tr>{% endfor %}</table>
<details><summary>full config</summary><pre>{{ config_yaml }}</pre></details>
{% endblock %}
"""

COMPARE_REPORT = """{% extends "layout.html" %}
{% block title %}forumtune comparison: {{ names[0] }} vs {{ names[1] }}{% endblock %}
{% block body %}
<h1>forumtune comparison: {{ names[0] }} vs {{ names[1] }}</h1>
<p class="muted">{{ paths[0] }} · {{ paths[1] }}</p>
{% if notes %}{% for note in notes %}<p class="note">{{ note }}</p>{% endfor %}{% endif %}

<h2>Results</h2>
<table id="metrics"><tr><th>metric</th><th>{{ names[0] }}</th><th>{{ names[1] }}</th></tr>
{% for row in metrics %}<tr><th>{{ row.label }}</th>{% for cell in row.cells %}
<td class="num {{ cell.css }}"{% if cell.value is not none %} data-value="{{ cell.value }}"{% endif %}>{{ cell.text }}</td>{% endfor %}</tr>
{% endfor %}</table>
<p class="muted">Green marks the better of the two where lower or higher is clearly better. Both runs'
numbers are only comparable when they were measured on the same held-out split (same data and
build settings; see the config differences below).</p>

<h2>Loss curves</h2>
<img class="curves" id="loss-curve" alt="loss curves of both runs" src="data:image/png;base64,{{ loss_png }}">

<h2>Artifacts in the fine-tuned answers</h2>
<table id="artifacts"><tr><th>check</th><th>{{ names[0] }}</th><th>{{ names[1] }}</th></tr>
{% for row in artifacts %}<tr><td>{{ row.label }}</td>{% for cell in row.cells %}<td class="num">{{ cell }}</td>{% endfor %}</tr>
{% endfor %}</table>

<h2>Config differences</h2>
{% if config_diff %}<table id="config-diff"><tr><th>key</th><th>{{ names[0] }}</th><th>{{ names[1] }}</th></tr>
{% for key, a, b in config_diff %}<tr><th>{{ key }}</th><td>{{ a }}</td><td>{{ b }}</td></tr>{% endfor %}</table>
{% else %}<p>The two configs are the same apart from the name.</p>{% endif %}
{% endblock %}
"""

TEMPLATES = {"layout.html": LAYOUT, "run.html": RUN_REPORT, "compare.html": COMPARE_REPORT}
