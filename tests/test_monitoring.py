"""deploy/monitoring: the alert rules pass ``promtool check rules`` and their unit tests
(``promtool test rules``), the dashboard is well formed, and every metric the rules and
the dashboard query is one the service exports (the /metrics contract below, and the
app's real /metrics output).

promtool comes from the Debian package ``prometheus`` (``make system-deps``); without it
these tests fail rather than skip, so a CI image that lacks it cannot pass silently."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import deal
from tests.support import asgi_client, make_settings, new_tenant, running_app

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "deploy" / "monitoring"
ALERTS = MONITORING / "alerts.yml"
ALERT_TESTS = MONITORING / "alerts.test.yml"
DASHBOARD = MONITORING / "dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"

# The /metrics contract: metric family (as in `# TYPE`) -> type.
CONTRACT = {
    "widget_http_request_duration_seconds": "histogram",
    "widget_open_streams": "gauge",
    "widget_room_events_published_total": "counter",
    "widget_room_events_delivered_total": "counter",
    "widget_room_event_delivery_lag_seconds": "histogram",
    "widget_outbox_depth": "gauge",
    "widget_outbox_oldest_age_seconds": "gauge",
    "widget_outbox_attempt_failures_total": "counter",
    "widget_outbox_gave_up_total": "counter",
    "widget_product_events_total": "counter",
}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")
# Label values the expressions may select.
LABEL_VALUES = {
    "event": {
        "bot_deal_created", "ai_deal_created", "bot_ticket_created", "ai_ticket_created",
        "deal_preview_displayed", "ticket_preview_displayed", "deal_preview_clicked",
        "ticket_preview_clicked", "deal_timeline_chatroom_clicked", "ticket_timeline_chatroom_clicked",
        "timeline_log_creation_failed", "contact_association_failed", "actor_filtered",
        "omnichannel_notify_failed",
    },
    "topic": {"chat_history", "notify.created", "notify.updated", "notify.deleted"},
}

# PromQL words that look like metric names: keywords and aggregation modifiers. Functions
# and aggregations are recognised by the "(" after them.
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
            "bool", "offset", "inf", "nan"}
# Grafana's variables, for checking dashboard expressions with promtool.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h", "$instance": ".*"}


# -- reading the files -------------------------------------------------------------------


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: `make system-deps` installs it (Debian package prometheus)",
            pytrace=False,
        )
    return path


def run_promtool(*args: str) -> str:
    command = [promtool(), *args]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    output = f"{result.stdout}\n{result.stderr}".strip()
    if result.returncode != 0:
        pytest.fail(f"`{' '.join(command[1:])}` exited {result.returncode}:\n{output}", pytrace=False)
    return output


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row's panels


def dashboard_exprs() -> list[tuple[str, str]]:
    """(panel title / refId, expr) of every dashboard query."""
    return [
        (f"{panel.get('title')} / {target.get('refId')}", target["expr"])
        for panel in panels(dashboard()) for target in panel.get("targets", []) if "expr" in target
    ]


def all_exprs() -> list[tuple[str, str]]:
    rules = [(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]
    return rules + [(f"panel {where}", expr) for where, expr in dashboard_exprs()]


def variable_metrics() -> list[tuple[str, str]]:
    """(variable, metric) of the dashboard's ``label_values(metric, label)`` variables."""
    found = []
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        for metric in re.findall(r"label_values\(\s*([A-Za-z_:][\w:]*)", text):
            found.append((variable["name"], metric))
    return found


# -- PromQL, as much of it as the checks need ----------------------------------------------

_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'')


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers outside strings, label matchers,
    ranges and grouping lists that are neither keywords nor followed by "(" (functions)."""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    text = re.sub(r"\$\{?\w+\}?", " ", text)
    names = set()
    for match in re.finditer(r"(?<![\w.$])[A-Za-z_:][\w:]*", text):
        word = match.group(0)
        if word.lower() in KEYWORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def family(name: str) -> str:
    """The metric family of a series name: a histogram's _bucket/_count/_sum are its family's."""
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and CONTRACT.get(base) == "histogram":
            return base
    return name


def label_matchers(expr: str, label: str) -> list[tuple[str, str]]:
    """(operator, value) of every matcher on ``label``, the value unescaped."""
    pattern = rf'\b{label}\s*(=~|!~|!=|=)\s*"((?:\\.|[^"\\])*)"'
    return [(op, re.sub(r"\\(.)", r"\1", value)) for op, value in re.findall(pattern, expr)]


def referenced_families() -> set[str]:
    names = {name for _, expr in all_exprs() for name in metric_names(expr)}
    names |= {metric for _, metric in variable_metrics()}
    return {family(name) for name in names}


def github_anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


# -- the alert rules ------------------------------------------------------------------------


def test_alert_rules_pass_promtool_check() -> None:
    output = run_promtool("check", "rules", str(ALERTS.relative_to(ROOT)))
    assert f"SUCCESS: {len(alert_rules())} rules found" in output, output


def test_alert_rules_pass_their_unit_tests() -> None:
    output = run_promtool("test", "rules", str(ALERT_TESTS.relative_to(ROOT)))
    assert "SUCCESS" in output, output


def test_every_alert_is_tested_firing_and_quiet() -> None:
    """alerts.test.yml proves each alert both ways: a case where it fires and one where
    it must not (a near miss)."""
    fires: set[str] = set()
    quiet: set[str] = set()
    for case in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fires if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - fires == set(), "alerts never tested firing"
    assert names - quiet == set(), "alerts never tested staying quiet"


def test_the_prd_alerts_are_there() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    timeline = rules["TimelineLogCreationFailureRateHigh"]
    assert "timeline_log_creation_failed" in timeline["expr"] and "[1h]" in timeline["expr"]
    assert "0.05" in timeline["expr"]
    assert timeline["labels"]["severity"] == "page" and timeline["labels"]["team"] == "crm"
    previews = rules["DealTicketPreviewsNotDisplayed"]
    assert previews["for"] == "15m"
    assert set(previews["labels"]["oncall"].split(",")) == {"crm", "omnichannel"}
    assert "CRM" in previews["annotations"]["summary"] and "Omnichannel" in previews["annotations"]["summary"]


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda rule: rule["alert"])
def test_alert_has_labels_annotations_and_a_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"page", "warning"}
    assert rule["labels"]["team"]
    assert rule["labels"]["oncall"]
    annotations = rule["annotations"]
    assert annotations.get("summary", "").strip(), "summary"
    assert annotations.get("description", "").strip(), "description"
    runbook = annotations.get("runbook", "")
    path, _, anchor = runbook.partition("#")
    assert path == "docs/operations.md" and anchor, runbook
    headings = re.findall(r"^#{1,6}\s+(.+)$", OPERATIONS.read_text(), re.M)
    assert anchor in {github_anchor(heading) for heading in headings}, f"no section #{anchor} in {path}"


# -- the dashboard -----------------------------------------------------------------------------


def test_dashboard_is_a_grafana_dashboard_with_a_datasource_input() -> None:
    board = dashboard()
    assert board["title"] and board["uid"]
    assert 36 <= board["schemaVersion"] <= 41
    assert {"name": "DS_PROMETHEUS", "type": "datasource", "pluginId": "prometheus"}.items() <= (
        board["__inputs"][0].items()
    )
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    ids = [panel["id"] for panel in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids repeat"


def test_every_panel_has_a_title_and_a_query_on_the_datasource_variable() -> None:
    for panel in panels(dashboard()):
        assert panel.get("title", "").strip(), f"panel {panel.get('id')} has no title"
        targets = panel.get("targets", [])
        assert targets, f"panel {panel['title']!r} has no target"
        for target in targets:
            assert target.get("expr", "").strip(), f"panel {panel['title']!r} has a target without expr"
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]


def test_dashboard_has_the_panels_asked_for() -> None:
    titles = " | ".join(panel["title"].lower() for panel in panels(dashboard()))
    for words in ("creations by type", "preview display rate", "room → record navigation",
                  "record → room clicks", "timeline log creation failure rate", "request rate by route",
                  "p95 latency by route", "5xx", "open streams", "published vs delivered",
                  "delivery lag p95", "outbox depth", "oldest", "notification failures"):
        assert words in titles, words
    timeline = next(p for p in panels(dashboard()) if p["title"].startswith("Timeline log creation failure rate (1h"))
    steps = timeline["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert any(step["value"] == 0.05 for step in steps), "the 5% threshold"


def test_dashboard_expressions_are_valid_promql(tmp_path: Path) -> None:
    """Each query, with Grafana's variables filled in, as a recording rule for promtool."""
    rules = []
    for number, (_, expr) in enumerate(dashboard_exprs()):
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        assert "$" not in expr, f"an unknown Grafana variable in {expr}"
        rules.append({"record": f"dashboard:query_{number}", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    output = run_promtool("check", "rules", str(path))
    assert f"SUCCESS: {len(rules)} rules found" in output, output


# -- metric names --------------------------------------------------------------------------------


@pytest.mark.parametrize(("expr", "names"), [
    ('sum by (event) (rate(widget_product_events_total{event=~"a|b"}[5m])) / 60', {"widget_product_events_total"}),
    ('histogram_quantile(0.95, sum by (route, le) (rate(widget_http_request_duration_seconds_bucket'
     '{route!~".*/events"}[$__rate_interval])))', {"widget_http_request_duration_seconds_bucket"}),
    ("(sum(increase(a_total[1h])) or vector(0)) == 0 and on () count(b offset 15m) > 1e3",
     {"a_total", "b"}),
    ("max(x) by (topic) unless ignoring(instance) y", {"x", "y"}),
])
def test_metric_names_finds_the_selected_metrics(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize(("where", "expr"), all_exprs(), ids=[where for where, _ in all_exprs()])
def test_expression_uses_only_contract_metrics(where: str, expr: str) -> None:
    names = metric_names(expr)
    assert names, f"no metric found in {expr}"
    for name in names:
        base = family(name)
        assert base in CONTRACT, f"{name} is not a /metrics contract name"
        assert CONTRACT[base] != "histogram" or name != base, f"{name}: query a histogram's _bucket/_count/_sum"
    for label, known in LABEL_VALUES.items():
        for op, value in label_matchers(expr, label):
            for alternative in value.split("|"):
                matched = {v for v in known if re.fullmatch(alternative, v)}
                assert matched, f'{label}{op}"{value}": {alternative!r} matches no known {label}'


def test_dashboard_variables_use_contract_metrics() -> None:
    found = variable_metrics()
    assert found
    for variable, metric in found:
        assert family(metric) in CONTRACT, f"variable {variable}: {metric}"


# -- against the service's real /metrics ------------------------------------------------------------

_SAMPLE = re.compile(r"^([A-Za-z_:][\w:]*)(?:\{(.*)\})?\s+(\S+)")


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    found = []
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match and match.group(1) == name:
            labels = dict(re.findall(r'(\w+)="((?:\\.|[^"\\])*)"', match.group(2) or ""))
            found.append((labels, float(match.group(3))))
    return found


async def test_metrics_endpoint_exposes_what_rules_and_dashboard_use(tmp_path: Path) -> None:
    """Start the app, create a bot deal through the API, scrape /metrics: every family the
    rules and the dashboard query is there with its HELP and TYPE, and the labels they
    select on carry the values they expect (route template, PRD event name)."""
    wanted = referenced_families()
    assert wanted <= set(CONTRACT)
    async with running_app(make_settings(tmp_path)) as application:
        tenant = await new_tenant(application.state.runtime)
        async with asgi_client(application, headers=tenant.headers) as http:
            created = await http.post("/api/v1/deals", json=deal(room_id="room-1", creator_flag="bot"))
            assert created.status_code == 201, created.text
            response = await http.get("/metrics")
    assert response.status_code == 200, f"GET /metrics answered {response.status_code}: {response.text[:300]}"
    text = response.text
    helps = set(re.findall(r"^# HELP (\S+) ", text, re.M))
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    missing = sorted(name for name in wanted if name not in helps or name not in types)
    assert not missing, f"families the rules/dashboard use but /metrics does not expose: {missing}"
    wrong = {name: types[name] for name in wanted if types[name] != CONTRACT[name]}
    assert not wrong, f"families of another type than the contract's: {wrong}"

    requests = samples(text, "widget_http_request_duration_seconds_count")
    assert any(
        labels.get("method") == "POST" and labels.get("route") == "/api/v1/deals"
        and labels.get("status") == "201" and value >= 1
        for labels, value in requests
    ), f"no POST /api/v1/deals 201 request counted by route template: {requests}"
    events = samples(text, "widget_product_events_total")
    assert any(labels.get("event") == "bot_deal_created" and value >= 1 for labels, value in events), (
        f"no bot_deal_created product event counted: {events}"
    )
