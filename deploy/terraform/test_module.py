#!/usr/bin/env python3
"""Checks the Terraform module in deploy/terraform without a terraform binary.

Parses every .tf file (module and examples) with python-hcl2 and checks what the module
declares: the resources of the pipeline, the notification and subscription settings, that every
bq-ingest setting the binary reads is a variable with the binary's default, and that IAM is least
privilege through non-authoritative members only. Run it with a Python that has python-hcl2
(deploy/terraform/test.sh makes one):

    python deploy/terraform/test_module.py [MODULE_DIR]

Exits non-zero and names every failed check.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import hcl2

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# Environment variables the binary reads that the module must not set: Cloud Run sets K_SERVICE
# and PORT; GOOGLE_CLOUD_PROJECT & co. are BQ_PROJECT's fallbacks; the others belong to `pull`
# and `backfill`, not to `serve`.
NOT_MODULE_SETTINGS = {
    "K_SERVICE", "FUNCTION_NAME", "PORT", "GOOGLE_CLOUD_PROJECT", "GCP_PROJECT", "GCLOUD_PROJECT",
    "HEALTH_PORT", "INGEST_SUBSCRIPTION", "INGEST_TOPIC",
}
# Read outside Settings and the command line: the log filter.
EXTRA_SETTINGS = {"RUST_LOG": "info"}
# The Python function's terraform_module/gcs_ocn_bq_ingest_function variables (variables.tf).
PYTHON_MODULE_VARIABLES = [
    "project_id", "app_id", "input_bucket", "cloudfunctions_source_bucket", "data_ingester_sa",
    "wait_for_job_seconds", "success_filename", "destination_regex", "max_batch_bytes",
    "job_prefix", "region", "function_source_folder",
]
PRIMITIVE_ROLES = {"roles/owner", "roles/editor", "roles/viewer"}
SERVICE_MEMBER = "serviceAccount:${google_service_account.service.email}"
# What the service's own account may do, and nothing more: (resource type, role).
SERVICE_GRANTS = {
    ("google_project_iam_member", "roles/bigquery.jobUser"),
    ("google_bigquery_dataset_iam_member", "roles/bigquery.dataEditor"),
    ("google_storage_bucket_iam_member", "roles/storage.objectViewer"),
    ("google_storage_bucket_iam_member", "roles/storage.objectUser"),
    ("google_pubsub_topic_iam_member", "roles/pubsub.publisher"),
}

failures: list[str] = []


def check(condition: bool, message: str) -> None:
    if not condition:
        failures.append(message)


def unquote(value):
    """python-hcl2 8 keeps the quotes of string literals and labels; drop them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    if isinstance(value, dict):
        return {unquote(k): unquote(v) for k, v in value.items() if k not in ("__is_block__", "__comments__")}
    if isinstance(value, list):
        return [unquote(v) for v in value]
    return value


def parse(directory: Path) -> dict:
    """Every top-level block of the .tf files of one module, merged by kind."""
    merged: dict = {"resource": {}, "data": {}, "variable": {}, "output": {}, "locals": {}, "module": {}}
    files = sorted(directory.glob("*.tf"))
    check(bool(files), f"{directory}: no .tf file")
    for path in files:
        with path.open() as f:
            try:
                doc = unquote(hcl2.load(f))
            except Exception as e:  # the parser's errors are of several types
                failures.append(f"{path}: does not parse: {e}")
                continue
        for block in doc.get("resource", []) + doc.get("data", []):
            kind = "resource" if block in doc.get("resource", []) else "data"
            for rtype, named in block.items():
                for name, body in named.items():
                    merged[kind].setdefault(rtype, {})[name] = body
        for kind in ("variable", "output", "module"):
            for block in doc.get(kind, []):
                merged[kind].update(block)
        for block in doc.get("locals", []):
            merged["locals"].update(block)
    return merged


def block(body: dict, name: str) -> dict:
    """The first nested block `name` of a resource body ({} when absent)."""
    found = body.get(name) or [{}]
    return found[0] if isinstance(found, list) else found


def settings_read_by_the_binary() -> dict[str, object]:
    """Environment variable → the binary's default (None: unset), from the code and the docs."""
    names = set(re.findall(r'"([A-Z][A-Z0-9_]{3,})"',
                           (REPO / "crates/ingest-core/src/settings.rs").read_text()))
    settings: dict[str, object] = {n: None for n in names}
    for path in (REPO / "crates/bq-ingest/src").rglob("*.rs"):
        for m in re.finditer(r'env = "([A-Z][A-Z0-9_]+)"(?:, default_value_t = ([^,)\]]+))?', path.read_text()):
            settings[m.group(1)] = m.group(2).strip() if m.group(2) else None
    settings.update(EXTRA_SETTINGS)
    # Defaults of Settings, as docs/configuration.md's table gives them: a literal in backticks
    # or "unset".
    for line in (REPO / "docs/configuration.md").read_text().splitlines():
        m = re.match(r"\| `([A-Z][A-Z0-9_]+)` \| (.*?) \|", line)
        if not m or m.group(1) not in settings:
            continue
        literal = re.match(r"`([^`]*)`", m.group(2))
        if literal and not re.fullmatch(r"[A-Z][A-Z0-9_]+", literal.group(1)):
            settings[m.group(1)] = literal.group(1)
    settings["LOG_FORMAT"] = "json"  # what `serve` logs in when LOG_FORMAT is unset
    return {k: v for k, v in settings.items() if k not in NOT_MODULE_SETTINGS}


def terraform_value(value) -> object:
    """A variable default as bq-ingest would read it from the environment."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(int(value)) if float(value).is_integer() else str(value)
    if value == []:
        return None
    return value


def evaluate(expression, variables: dict, locals_: dict, depth: int = 0):
    """Evaluates the arithmetic subset of HCL the module's deadlines use."""
    if not isinstance(expression, str):
        return expression
    text = expression
    if text.startswith("${") and text.endswith("}") and text.count("${") == 1:
        text = text[2:-1]
    elif "${" in text:  # a template such as "${local.x}s"
        return re.sub(r"\$\{([^}]*)\}", lambda m: str(evaluate("${" + m.group(1) + "}", variables, locals_, depth)), text)
    if depth > 10:
        raise ValueError(f"{expression}: too deep")
    text = re.sub(r"var\.([a-z_0-9]+)", lambda m: repr(variables[m.group(1)]), text)
    text = re.sub(r"local\.([a-z_0-9]+)",
                  lambda m: repr(evaluate(locals_[m.group(1)], variables, locals_, depth + 1)), text)
    if not re.fullmatch(r"[0-9+\-*/ ().,'a-z]*", text):
        raise ValueError(f"{expression}: not plain arithmetic ({text})")
    return eval(text, {"__builtins__": {}}, {"min": min, "max": max})  # noqa: S307 - digits and operators only


def check_pipeline(module: dict) -> None:
    resources = module["resource"]
    expected = {
        "google_pubsub_topic": {"notifications", "dead_letter", "failures"},
        "google_pubsub_subscription": {"push", "dead_letter", "failures"},
        "google_storage_notification": {"notification"},
        "google_cloud_run_v2_service": {"service"},
        "google_service_account": {"service", "invoker"},
        "google_bigquery_dataset": {"state"},
    }
    for rtype, names in expected.items():
        check(names <= set(resources.get(rtype, {})),
              f"resources: {rtype} should include {sorted(names)}, has {sorted(resources.get(rtype, {}))}")
    check("google_storage_bucket" not in resources, "the module must not create or own the bucket")

    notification = resources.get("google_storage_notification", {}).get("notification", {})
    check(notification.get("payload_format") == "JSON_API_V1", "notification: payload_format JSON_API_V1")
    check(notification.get("event_types") == ["OBJECT_FINALIZE"], "notification: event_types [OBJECT_FINALIZE]")
    check(notification.get("object_name_prefix") == "${var.object_prefix}", "notification: object_name_prefix = var.object_prefix")
    check(notification.get("topic") == "${google_pubsub_topic.notifications.id}", "notification: to the notifications topic")
    check("google_pubsub_topic_iam_member.gcs_publishes_notifications" in str(notification.get("depends_on")),
          "notification: depends on the GCS agent's publisher member (GCS checks it on creation)")

    service = resources.get("google_cloud_run_v2_service", {}).get("service", {})
    template = block(service, "template")
    container = block(template, "containers")
    check(container.get("image") == "${var.image}", "service: image = var.image")
    check(template.get("service_account") == "${google_service_account.service.email}", "service: runs as the module's account")
    check(block(container, "ports").get("container_port") == 8080, "service: container port 8080 (the image's $PORT)")
    for probe in ("startup_probe", "liveness_probe"):
        path = block(block(container, probe), "http_get").get("path")
        check(path == "/health", f"service: {probe} on /health (Cloud Run reserves /healthz), found {path}")
    env = block(container, "dynamic").get("env", {})
    check(env.get("for_each") == "${local.env}", "service: its env comes from local.env")

    push = resources.get("google_pubsub_subscription", {}).get("push", {})
    check(push.get("topic") == "${google_pubsub_topic.notifications.id}", "push: on the notifications topic")
    dynamic_push = block(push, "dynamic").get("push_config", {})
    check(dynamic_push.get("for_each") == "${var.push_enabled ? [google_cloud_run_v2_service.service.uri] : []}",
          f"push: push_config while var.push_enabled, to the service's URL, found {dynamic_push.get('for_each')}")
    push_config = block(dynamic_push, "content")
    check(push_config.get("push_endpoint") == "${push_config.value}/pubsub/push", "push: to the service's /pubsub/push")
    check(module["variable"].get("push_enabled", {}).get("default") is True, "push: enabled by default")
    oidc = block(push_config, "oidc_token")
    check(oidc.get("service_account_email") == "${google_service_account.invoker.email}", "push: OIDC token of the invoker account")
    check(oidc.get("audience") == "${push_config.value}", "push: the token's audience is the service's URL (what Cloud Run checks)")
    retry = block(push, "retry_policy")
    check(bool(retry.get("minimum_backoff")) and bool(retry.get("maximum_backoff")), "push: a retry policy")
    dead_letter = block(push, "dead_letter_policy")
    check(dead_letter.get("dead_letter_topic") == "${google_pubsub_topic.dead_letter.id}", "push: dead letters to the dead-letter topic")
    check(bool(dead_letter.get("max_delivery_attempts")), "push: max_delivery_attempts")
    check(block(push, "expiration_policy").get("ttl") == "", "push: never expires")
    dlq_subscription = resources.get("google_pubsub_subscription", {}).get("dead_letter", {})
    check(dlq_subscription.get("topic") == "${google_pubsub_topic.dead_letter.id}", "a subscription keeps the dead letters")

    # Deadlines: bq-ingest answers by REQUEST_DEADLINE_SECONDS; Cloud Run's timeout must be
    # longer, and the ack deadline at least as long as the timeout and at most Pub/Sub's 600 s.
    variables = {k: v.get("default") for k, v in module["variable"].items()}
    limit = module["variable"].get("request_deadline_seconds", {}).get("validation", [{}])
    upper = 570
    check("<= 570" in str(limit), "request_deadline_seconds: validated to at most 570")
    for deadline in (variables.get("request_deadline_seconds"), upper):
        values = dict(variables, request_deadline_seconds=deadline)
        try:
            timeout = evaluate(template.get("timeout"), values, module["locals"])
            ack = evaluate(push.get("ack_deadline_seconds"), values, module["locals"])
        except (KeyError, ValueError) as e:
            failures.append(f"deadlines: cannot evaluate: {e}")
            continue
        timeout_s = int(str(timeout).rstrip("s"))
        check(timeout_s > deadline, f"deadlines: Cloud Run timeout {timeout} must exceed REQUEST_DEADLINE_SECONDS {deadline}")
        check(timeout_s <= ack <= 600, f"deadlines: ack deadline {ack} must cover the timeout {timeout} and be at most 600")


def check_reconcile(module: dict) -> None:
    """The scheduled sweep: a Cloud Run job running `reconcile --apply --mode notifications`
    with the service's settings, started by Cloud Scheduler through the Jobs API with an OAuth
    token of an account that may run only that job; all of it only with reconcile_schedule."""
    resources = module["resource"]
    job = resources.get("google_cloud_run_v2_job", {}).get("reconcile", {})
    scheduler = resources.get("google_cloud_scheduler_job", {}).get("reconcile", {})
    check(bool(job) and bool(scheduler), "reconcile: a Cloud Run job and a Cloud Scheduler job")
    for name, body in [("job", job), ("scheduler", scheduler)]:
        check(body.get("count") == "${local.reconcile ? 1 : 0}", f"reconcile {name}: only with reconcile_schedule")
    check(module["locals"].get("reconcile") == "${var.reconcile_schedule != null}", "reconcile: local.reconcile follows the schedule")
    check(module["variable"].get("reconcile_schedule", {}).get("default", "unset") is None, "reconcile: off by default")
    args = str(module["locals"].get("reconcile_args"))
    for needed in ("reconcile", "--apply", "notifications", "--topic", "google_pubsub_topic.notifications.name"):
        check(needed in args, f"reconcile: the job's args include {needed}: {args}")
    container = block(block(block(job, "template"), "template"), "containers")
    check(container.get("args") == "${local.reconcile_args}", "reconcile: the job runs local.reconcile_args")
    check(block(container, "dynamic").get("env", {}).get("for_each") == "${local.env}", "reconcile: the job has the service's settings")
    target = block(scheduler, "http_target")
    check(":run" in str(target.get("uri")) and "run.googleapis.com/v2" in str(target.get("uri")), "reconcile: the scheduler calls the Jobs API's :run")
    check(bool(block(target, "oauth_token").get("service_account_email")), "reconcile: with an OAuth token")


def check_settings(module: dict) -> None:
    settings_map = module["locals"].get("settings", {})
    variables = module["variable"]
    for name, default in sorted(settings_read_by_the_binary().items()):
        variable = name.lower()
        check(name in settings_map, f"settings: {name} is not passed to the service (local.settings)")
        if name not in settings_map:
            continue
        source = str(settings_map[name])
        local = re.fullmatch(r"\$\{local\.([a-z_0-9]+)\}", source)
        if local:  # one level of indirection: BQ_PROJECT = local.bq_project = coalesce(var.bq_project, …)
            source = str(module["locals"].get(local.group(1)))
        check(f"var.{variable}" in source,
              f"settings: {name} = {settings_map[name]} should come from var.{variable}")
        check(variable in variables, f"settings: no variable {variable} for {name}")
        if variable not in variables:
            continue
        check("default" in variables[variable], f"variable {variable}: needs a default (bq-ingest's)")
        found = terraform_value(variables[variable].get("default"))
        if name == "PUSH_AUTH_KEYS_URL":
            default = None  # the binary's constant: Google's keys; null keeps it
        check(found == default, f"variable {variable}: default {found!r}, bq-ingest's is {default!r}")
    for name in settings_map:
        check(name not in NOT_MODULE_SETTINGS, f"settings: the module must not set {name}")
    for name, variable in variables.items():
        check(bool(variable.get("description")), f"variable {name}: no description")
        check("type" in variable, f"variable {name}: no type")
    for name, output in module["output"].items():
        check(bool(output.get("description")), f"output {name}: no description")
    for needed in ("service_url", "service_account_email", "notification_topic", "push_subscription",
                   "dead_letter_topic", "failure_topic", "state_table"):
        check(needed in module["output"], f"outputs: {needed} missing")


def iam_resources(module: dict):
    for rtype, named in module["resource"].items():
        if "_iam_" in rtype:
            for name, body in named.items():
                yield rtype, name, body


def check_iam(module: dict) -> None:
    grants = set()
    for rtype, name, body in iam_resources(module):
        where = f"{rtype}.{name}"
        check(rtype.endswith("_iam_member"), f"{where}: only *_iam_member (no _iam_policy, no _iam_binding)")
        role = body.get("role", "")
        check(role not in PRIMITIVE_ROLES, f"{where}: primitive role {role}")
        check(role.startswith("roles/"), f"{where}: a predefined role, found {role}")
        if body.get("member") == SERVICE_MEMBER:
            grants.add((rtype, role))
            check((rtype, role) in SERVICE_GRANTS, f"{where}: the service account must not get {role} on {rtype}")
        if role == "roles/storage.objectUser":
            condition = block(body, "dynamic").get("condition", {})
            check("startsWith" in str(condition), f"{where}: objectUser only under the ordered prefixes (an IAM condition)")
    check(grants == SERVICE_GRANTS, f"IAM: the service account's grants {sorted(grants)} should be {sorted(SERVICE_GRANTS)}")
    members = {(rtype, body.get("role"), body.get("member")) for rtype, _, body in iam_resources(module)}
    pubsub_agent, gcs_agent = "${local.pubsub_agent}", "${local.gcs_agent}"
    for needed in [
        ("google_pubsub_topic_iam_member", "roles/pubsub.publisher", gcs_agent),
        ("google_pubsub_topic_iam_member", "roles/pubsub.publisher", pubsub_agent),
        ("google_pubsub_subscription_iam_member", "roles/pubsub.subscriber", pubsub_agent),
        ("google_cloud_run_v2_service_iam_member", "roles/run.invoker", "serviceAccount:${google_service_account.invoker.email}"),
        ("google_cloud_run_v2_job_iam_member", "roles/run.invoker", "serviceAccount:${google_service_account.scheduler[0].email}"),
    ]:
        check(needed in members, f"IAM: missing {needed}")
    project_roles = [body.get("role") for rtype, _, body in iam_resources(module) if rtype == "google_project_iam_member"]
    check(project_roles == ["roles/bigquery.jobUser"], f"IAM: the only project-wide role is jobUser, found {project_roles}")


def check_example(example: dict, module: dict) -> None:
    calls = example["module"]
    check(len(calls) == 1, f"example: one module call, found {list(calls)}")
    for call in calls.values():
        check(call.get("source") == "../..", "example: uses the module at ../..")
        required = {k for k, v in module["variable"].items() if "default" not in v}
        check(required <= set(call), f"example: passes every required variable {sorted(required)}")
        unknown = set(call) - set(module["variable"]) - {"source", "providers", "depends_on"}
        check(not unknown, f"example: passes unknown variables {sorted(unknown)}")


def check_migration_table(module: dict) -> None:
    path = REPO / "docs/deploy.md"
    check(path.exists(), "docs/deploy.md: missing")
    deploy = path.read_text() if path.exists() else ""
    for variable in PYTHON_MODULE_VARIABLES:
        check(re.search(rf"^\| `{variable}` \|", deploy, re.M) is not None,
              f"docs/deploy.md: the migration table does not map the Python module's {variable}")
    for variable in re.findall(r"^\| `[a-z_]+` \| `([a-z_]+)`", deploy, re.M):
        check(variable in module["variable"], f"docs/deploy.md maps to {variable}, which the module does not have")


def main() -> int:
    root = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE  # another copy, to test the test
    module = parse(root)
    example = parse(root / "examples" / "basic")
    check_pipeline(module)
    check_settings(module)
    check_iam(module)
    check_reconcile(module)
    check_example(example, module)
    check_migration_table(module)
    counts = {kind: sum(len(v) for v in module[kind].values()) if kind in ("resource", "data") else len(module[kind])
              for kind in ("resource", "data", "variable", "output")}
    if failures:
        for failure in failures:
            print(f"FAIL {failure}", file=sys.stderr)
        print(f"terraform module: {len(failures)} failed checks", file=sys.stderr)
        return 1
    print(f"terraform module: all checks passed ({counts['resource']} resources, {counts['data']} data sources, "
          f"{counts['variable']} variables, {counts['output']} outputs; example parsed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
