#!/usr/bin/env python3
"""Checks the Grafana dashboard against what the bridge exports.

    python3 deploy/check_dashboard.py DASHBOARD_JSON METRICS_TEXT_FILE

METRICS_TEXT_FILE is a scrape of the admin port (`curl -s localhost:9464/metrics`). For every panel
(rows' nested panels included) and every template variable query, the PromQL expressions are tokenised and
the metric names they use are extracted: quoted strings, label matchers `{...}`, ranges `[...]`, Grafana
variables (`$x`, `${x}`, `[[x]]`), grouping label lists (`by`, `without`, `on`, `ignoring`, `group_left`,
`group_right`), functions, aggregation operators and keywords are dropped; the identifiers left are metric
names. Then:

- a `progress_bridge_` name must be exported: a sample name in the scrape, or `<family>_bucket|_sum|_count`
  of a family whose `# TYPE` line says histogram (or `_sum|_count` for a summary);
- any other name must be in EXTERNAL_METRICS below (the exporter it comes from is named there, and the panel
  using it must name that exporter in its title or description); `process_start_time_seconds` only counts
  if the bridge exports it;
- every identifier called like a function must be a PromQL function or aggregation operator;
- labels in matchers and grouping clauses must be labels of the metrics used or target labels;
- rate/irate/increase/resets only over counters (and histogram/summary _bucket/_sum/_count);
- histogram_quantile's inner aggregations keep `le`;
- per-replica metrics (every replica reads every event) are not summed across replicas: the first
  aggregation that drops the replica label (`pod`/`instance`) around them must not be `sum`;
- every panel has targets with a non-empty expr, panel ids are unique;
- every topic in REQUIRED_TOPICS is shown by some panel.

Standard library only. Exits 1 listing every problem; prints a one-line summary on success.
"""
import json
import re
import sys

PREFIX = "progress_bridge_"

# Metrics from other exporters the dashboard may use: name -> (exporter, type, labels).
EXTERNAL_METRICS = {
    "up": ("prometheus", "gauge", {"job", "instance"}),
    "kube_pod_container_status_restarts_total": (
        "kube-state-metrics", "counter", {"namespace", "pod", "container", "uid"}),
    "kube_pod_container_status_last_terminated_reason": (
        "kube-state-metrics", "gauge", {"namespace", "pod", "container", "uid", "reason"}),
}
# Accepted only when the bridge's scrape contains it (the bridge does not export process metrics today).
PROCESS_METRICS = {"process_start_time_seconds"}

# Labels Prometheus / prometheus-operator attach to every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "pod", "service", "endpoint", "container", "__name__"}
REPLICA_LABELS = {"pod", "instance"}

# Metrics every replica counts for the whole input (each reads every event): never summed across replicas.
PER_REPLICA_METRICS = {
    PREFIX + n for n in (
        "events_consumed_total", "events_invalid_total", "events_applied_total", "events_duplicate_total",
        "consumer_lag", "input_partitions", "tracked_jobs", "active_jobs")
}

# topic -> alternatives; a topic is covered when one panel's targets use every item of one alternative
# ("fn:x" = the PromQL function x).
REQUIRED_TOPICS = {
    "ingest rate by event type": [{PREFIX + "events_consumed_total"}],
    "invalid events by reason": [{PREFIX + "events_invalid_total"}],
    "dead-lettered rate": [{PREFIX + "events_dead_lettered_total", "fn:rate"}],
    "consumer lag per partition": [{PREFIX + "consumer_lag"}],
    "WebSocket connections": [{PREFIX + "websocket_connections"}],
    "deliveries (sent, conflated, dropped)": [
        {PREFIX + "messages_sent_total", PREFIX + "messages_conflated_total", PREFIX + "messages_dropped_total"}],
    "delivery age quantiles": [{PREFIX + "event_age_at_delivery_seconds_bucket", "fn:histogram_quantile"}],
    "restarts": [{"kube_pod_container_status_restarts_total"}, {"process_start_time_seconds", "fn:changes"}],
    "partition ownership": [{PREFIX + "partitions_owned", PREFIX + "input_partitions"}],
    "time since last checkpoint": [{PREFIX + "last_commit_timestamp_seconds", "fn:time"}],
    "checkpoint failures": [{PREFIX + "checkpoint_failures_total"}],
    "Kafka up": [{PREFIX + "kafka_up"}],
    "Kafka broker RTT": [{PREFIX + "kafka_broker_rtt_seconds"}],
}

AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk",
                "topk", "quantile", "limitk", "limit_ratio"}
FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time",
    "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "deg", "delta", "deriv", "double_exponential_smoothing",
    "exp", "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile",
    "histogram_stddev", "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase",
    "info", "irate", "label_join", "label_replace", "last_over_time", "ln", "log10", "log2",
    "mad_over_time", "max_over_time", "min_over_time", "minute", "month", "pi", "predict_linear",
    "present_over_time", "quantile_over_time", "rad", "rate", "resets", "round", "scalar", "sgn", "sin",
    "sinh", "sort", "sort_by_label", "sort_by_label_desc", "sort_desc", "sqrt", "stddev_over_time",
    "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
    "start", "end",  # the @ modifier's start() / end()
}
COUNTER_FUNCTIONS = {"rate", "irate", "increase", "resets"}
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "offset", "bool", "atan2", "inf", "nan"}

TOKEN = re.compile(r"""
    (?P<space>\s+|\#[^\n]*)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<var>\$\{[^}]*\}|\$\w+|\[\[[^\]]*\]\])
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w.]))
  | (?P<num>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<op>==|!=|>=|<=|=~|!~|[-+*/%^<>=(),@])
""", re.VERBOSE)
MATCHER = re.compile(r"""("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)|([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)""")


class PromQLError(Exception):
    pass


def _closing(text, start, open_char, close_char):
    """Index just past the bracket closing the one at start, skipping quoted strings."""
    depth, i = 0, start
    while i < len(text):
        c = text[i]
        if c in "\"'`":
            m = TOKEN.match(text, i)
            if not m or m.lastgroup != "str":
                raise PromQLError(f"unterminated string at {i}")
            i = m.end()
            continue
        depth += c == open_char
        depth -= c == close_char
        i += 1
        if depth == 0:
            return i
    raise PromQLError(f"unbalanced {open_char!r} at {start}")


def tokenise(expr):
    """(kind, value) tokens; a label matcher block is one ("selector", text) token, a range one ("range", text)."""
    tokens, i = [], 0
    while i < len(expr):
        if expr[i] == "{":
            end = _closing(expr, i, "{", "}")
            tokens.append(("selector", expr[i + 1:end - 1]))
            i = end
            continue
        if expr[i] == "[" and not expr.startswith("[[", i):
            end = _closing(expr, i, "[", "]")
            tokens.append(("range", expr[i + 1:end - 1]))
            i = end
            continue
        m = TOKEN.match(expr, i)
        if not m:
            raise PromQLError(f"unexpected {expr[i]!r} at {i}")
        if m.lastgroup != "space":
            tokens.append((m.lastgroup, m.group()))
        i = m.end()
    return tokens


def selector_labels(text):
    """Label names matched in a {...} block, and a metric name given as {__name__="..."}."""
    labels, name = set(), None
    for m in MATCHER.finditer(text):
        if m.group(2):
            labels.add(m.group(2))
            if m.group(2) == "__name__" and m.group(3) == "=":
                value = re.match(r"\s*(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|`[^`]*`)", text[m.end():])
                if value:
                    name = value.group(1)[1:-1]
    return labels, name


class Analysis:
    """Metric names, functions, labels and aggregation structure of one PromQL expression."""

    def __init__(self, expr):
        self.tokens = tokenise(expr)
        self.metrics = []        # (token index, name)
        self.functions = set()
        self.unknown_functions = set()
        self.labels = set()      # label names in matchers and grouping clauses
        self.calls = []          # (name, open index, close index) for functions and aggregations
        self.aggregations = []   # (name, open, close, kind 'by'|'without'|None, labels)
        toks = self.tokens
        match = {}
        stack = []
        for i, (kind, value) in enumerate(toks):
            if kind == "op" and value == "(":
                stack.append(i)
            elif kind == "op" and value == ")":
                if not stack:
                    raise PromQLError("unbalanced ')'")
                match[stack.pop()] = i
        if stack:
            raise PromQLError("unbalanced '('")
        self.match = match

        def is_open(j):
            return j < len(toks) and toks[j] == ("op", "(")

        def label_list(j):
            """Labels of the '(' ... ')' at j, and the index after it."""
            end = match[j]
            names = {v for k, v in toks[j + 1:end] if k == "ident"}
            return names, end + 1

        skip = set()
        i = 0
        while i < len(toks):
            kind, value = toks[i]
            if i in skip or kind != "ident":
                if kind == "selector":
                    labels, name = selector_labels(value)
                    self.labels |= labels
                    if name and not (i > 0 and toks[i - 1][0] == "ident"):
                        self.metrics.append((i, name))
                i += 1
                continue
            lower = value.lower()
            if lower in GROUPING:
                if is_open(i + 1):
                    names, after = label_list(i + 1)
                    self.labels |= names
                    skip.update(range(i + 1, after))
                i += 1
                continue
            if is_open(i + 1):
                if lower in AGGREGATIONS:
                    self._aggregation(i, label_list, is_open, skip)
                elif value in FUNCTIONS:
                    self.functions.add(value)
                    self.calls.append((value, i + 1, match[i + 1]))
                else:
                    self.unknown_functions.add(value)
                i += 1
                continue
            if lower in AGGREGATIONS and i + 1 < len(toks) and toks[i + 1][0] == "ident" \
                    and toks[i + 1][1].lower() in ("by", "without"):
                self._aggregation(i, label_list, is_open, skip)
                i += 1
                continue
            if lower in KEYWORDS:
                i += 1
                continue
            self.metrics.append((i, value))
            i += 1

    def _aggregation(self, i, label_list, is_open, skip):
        toks, name = self.tokens, self.tokens[i][1].lower()
        j, grouping, labels = i + 1, None, set()
        if j < len(toks) and toks[j][0] == "ident" and toks[j][1].lower() in ("by", "without"):
            grouping = toks[j][1].lower()
            if not is_open(j + 1):
                raise PromQLError(f"{name} {grouping} without a label list")
            labels, j = label_list(j + 1)
            self.labels |= labels
            skip.update(range(i + 1, j))
        if not is_open(j):
            raise PromQLError(f"{name} without an argument")
        close = self.match[j]
        after = close + 1
        if grouping is None and after < len(toks) and toks[after][0] == "ident" \
                and toks[after][1].lower() in ("by", "without"):
            grouping = toks[after][1].lower()
            if is_open(after + 1):
                labels, _ = label_list(after + 1)
        self.functions.add(name)
        self.calls.append((name, j, close))
        self.aggregations.append((name, j, close, grouping, labels))

    def enclosing_aggregations(self, index):
        """Aggregations whose argument contains the token at index, innermost first."""
        inside = [a for a in self.aggregations if a[1] < index < a[2]]
        return sorted(inside, key=lambda a: a[2] - a[1])


def parse_exposition(text):
    """Names a query can select, each with its type, and each name's label names."""
    families, samples = {}, {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                families[parts[2]] = parts[3]
        elif line and not line.startswith("#"):
            m = re.match(r"([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?", line)
            if m:
                labels = samples.setdefault(m.group(1), set())
                if m.group(2):
                    labels.update(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*=", m.group(2)))
    names = {}
    for family, kind in families.items():
        if kind == "histogram":
            for suffix, t in (("_bucket", "counter"), ("_sum", "counter"), ("_count", "counter")):
                names[family + suffix] = t
        elif kind == "summary":
            names[family + "_sum"] = names[family + "_count"] = "counter"
            names[family] = "gauge"
        else:
            names[family] = kind
    for sample in samples:
        if sample not in names:
            base = re.sub(r"_(bucket|sum|count|total|created)$", "", sample)
            names[sample] = "counter" if families.get(base) in ("counter", "histogram", "summary") else \
                families.get(sample, "untyped")
    labels = {n: set(samples.get(n, set())) for n in names}
    for family, kind in families.items():
        if kind == "histogram":
            labels[family + "_bucket"] = labels.get(family + "_bucket", set()) | {"le"}
        elif kind == "summary":
            labels[family] = labels.get(family, set()) | {"quantile"}
    return names, labels


def walk_panels(panels):
    for panel in panels or []:
        yield panel
        yield from walk_panels(panel.get("panels"))


def variable_expressions(dashboard):
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        query = (query or var.get("definition") or "").strip()
        m = re.fullmatch(r"label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)", query, re.S)
        if m:
            yield var.get("name"), m.group(1)
        elif (m := re.fullmatch(r"query_result\((.*)\)", query, re.S)):
            yield var.get("name"), m.group(1)


def main(argv):
    if len(argv) != 3:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    with open(argv[1], encoding="utf-8") as f:
        dashboard = json.load(f)
    with open(argv[2], encoding="utf-8") as f:
        exported, exported_labels = parse_exposition(f.read())
    if not any(n.startswith(PREFIX) for n in exported):
        print(f"{argv[2]}: no {PREFIX}* metrics in it: not a scrape of the bridge", file=sys.stderr)
        return 2

    problems, used, ids = [], set(), set()
    covered = {topic: False for topic in REQUIRED_TOPICS}
    panels = [p for p in walk_panels(dashboard.get("panels")) if p.get("type") != "row"]
    if not panels:
        problems.append("the dashboard has no panels")

    def known_type(name):
        if name in exported:
            return exported[name]
        if name in EXTERNAL_METRICS:
            return EXTERNAL_METRICS[name][1]
        return None

    def check_expression(where, expr, panel=None):
        try:
            a = Analysis(expr)
        except PromQLError as e:
            problems.append(f"{where}: cannot parse {expr!r}: {e}")
            return set(), set()
        names = {n for _, n in a.metrics}
        for fn in sorted(a.unknown_functions):
            problems.append(f"{where}: unknown function {fn}()")
        for name in sorted(names):
            if name.startswith(PREFIX) or name in PROCESS_METRICS:
                if name not in exported:
                    problems.append(f"{where}: {name} is not exported by the bridge")
            elif name not in EXTERNAL_METRICS:
                problems.append(f"{where}: {name} is neither {PREFIX}* nor in the allow-list")
            elif panel is not None:
                source = EXTERNAL_METRICS[name][0]
                text = f"{panel.get('title', '')} {panel.get('description', '')}".lower()
                if source != "prometheus" and source not in text:
                    problems.append(f"{where}: uses {name} but does not say it comes from {source}")
        if any(known_type(n) is None for n in names):
            return names, a.functions  # reported above; its labels cannot be judged
        allowed = set(TARGET_LABELS)
        for name in names:
            allowed |= exported_labels.get(name, set())
            allowed |= EXTERNAL_METRICS.get(name, ("", "", set()))[2]
        for label in sorted(a.labels - allowed):
            problems.append(f"{where}: label {label!r} is on none of {sorted(names)}")
        for fn, open_, close in a.calls:
            if fn in COUNTER_FUNCTIONS:
                for index, name in a.metrics:
                    if open_ < index < close and known_type(name) not in (None, "counter"):
                        problems.append(f"{where}: {fn}() over {name}, a {known_type(name)}")
            if fn == "histogram_quantile":
                for agg, o, c, grouping, labels in a.aggregations:
                    if open_ < o and c < close and any(o < i < c and n.endswith("_bucket") for i, n in a.metrics) \
                            and ((grouping == "by" and "le" not in labels) or (grouping == "without" and "le" in labels)
                                 or grouping is None):
                        problems.append(f"{where}: {agg}() inside histogram_quantile() drops 'le'")
        for index, name in a.metrics:
            if name not in PER_REPLICA_METRICS:
                continue
            for agg, o, c, grouping, labels in a.enclosing_aggregations(index):
                drops = grouping is None or (grouping == "by" and not labels & REPLICA_LABELS) \
                    or (grouping == "without" and labels & REPLICA_LABELS)
                if drops:
                    if agg in ("sum", "count"):
                        problems.append(f"{where}: {agg}() adds {name} up across replicas (every replica "
                                        "counts every event: use max, or keep pod)")
                    break
        return names, a.functions

    for panel in panels:
        where = f"panel {panel.get('id')} {panel.get('title', '')!r}"
        if panel.get("id") in ids:
            problems.append(f"{where}: duplicate panel id")
        ids.add(panel.get("id"))
        targets = panel.get("targets") or []
        if not targets:
            problems.append(f"{where}: no targets")
        panel_names, panel_functions = set(), set()
        for target in targets:
            expr = (target.get("expr") or "").strip()
            if not expr:
                problems.append(f"{where}: target {target.get('refId')} has no expr")
                continue
            names, functions = check_expression(f"{where} {target.get('refId')}", expr, panel)
            panel_names |= names
            panel_functions |= functions
        used |= panel_names
        have = panel_names | {f"fn:{f}" for f in panel_functions}
        for topic, alternatives in REQUIRED_TOPICS.items():
            if any(alt <= have for alt in alternatives):
                covered[topic] = True

    for name, expr in variable_expressions(dashboard):
        names, _ = check_expression(f"variable {name}", expr)
        used |= names

    for topic, ok in covered.items():
        if not ok:
            problems.append(f"no panel shows {topic}")

    if problems:
        print(f"dashboard check failed ({len(problems)} problems):", file=sys.stderr)
        for p in problems:
            print(f"  {p}", file=sys.stderr)
        return 1
    print(f"dashboard: {len(panels)} panels, {len(used)} metric names, all exported")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
