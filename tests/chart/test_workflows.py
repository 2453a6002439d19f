"""One way to run a stage (issue 16's chart parts): every stage of a submitted pipeline sees the same
zoo kinds, the `kinds` workflow parameter, whatever the chart's values say; argo/ holds a Workflow
for each of the chart's five WorkflowTemplates, by the names a release called inverse-tracr gives them."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest
import yaml
from k8s_tools import ROOT, argo_objects, argo_schema, fill, render, training_inputs, training_job, workflow_template

from inverse_tracr.cli import build_parser
from inverse_tracr.pipeline.run import load_values, plan
from inverse_tracr.pipeline.submit import workflow_body

STAGES = ("generate", "distill", "train", "evaluate", "pipeline")


def _when(expression: str) -> bool:
    """Argo's `when` for the one form the chart uses: 'a' == 'b' or 'a' != 'b'."""
    left, operator, right = re.fullmatch(r"'([^']*)' (==|!=) '([^']*)'", expression).groups()
    return (left == right) == (operator == "==")


def _kinds_per_stage(docs: list[dict], submitted: dict[str, str]) -> dict[str, list[str]]:
    """The kinds each stage works on when the pipeline is submitted with these parameters: Argo's
    parameter defaulting and substitution, its withParam fan-outs and `when`, then the real CLI."""
    pipeline = workflow_template(docs, "pipeline")
    values = {p["name"]: p["value"] for p in pipeline["spec"]["arguments"]["parameters"]} | submitted
    seen: dict[str, list[str]] = {}
    for stage, fan_out, leaf in (("distill", "kinds", "distill-part"), ("evaluate", "kinds", "evaluate-kind")):
        templates = {t["name"]: t for t in workflow_template(docs, stage)["spec"]["templates"]}
        task = next(t for t in templates[stage]["dag"]["tasks"] if t["name"] == fan_out)
        items = json.loads(fill(task["withParam"], values))
        kept = [i for i in items if "when" not in task or _when(fill(task["when"], values).replace("{{item}}", i))]
        parsed = []
        for item in kept:
            args = [fill(a, {**values, "kind": item, "part": "0"}) for a in templates[leaf]["container"]["args"]]
            parsed.append(build_parser().parse_args(args).kind)
        seen[stage] = parsed
    seen["train"] = list(_trainings(docs, values)["train"].kinds)
    return seen


def _trainings(docs: list[dict], values: dict[str, str]) -> dict:
    """The training command of each train task of the pipeline, as the real CLI parses it."""
    tasks = [t for t in workflow_template(docs, "pipeline")["spec"]["templates"][0]["dag"]["tasks"] if t["templateRef"]["template"] == "train"]
    container = training_job(docs)["spec"]["template"]["spec"]["containers"][0]
    parsed = {}
    for task in tasks:
        inputs = training_inputs(docs, {p["name"]: fill(p["value"], values) for p in task["arguments"]["parameters"]})
        args = [fill(a, values | inputs) for a in container["args"]]
        parsed[task["name"]] = build_parser().parse_args(args[args.index("inverse_tracr.cli") + 1 :])
    return parsed


@pytest.mark.parametrize("submitted", [["standard", "compressed", "natural"], ["standard", "natural"], ["standard"]])
def test_every_stage_of_a_submitted_pipeline_sees_the_submitted_kinds(submitted):
    docs = render()  # the values say kinds: [standard]
    body = workflow_body("inverse-tracr-pipeline", {"kinds": json.dumps(submitted)})  # inverse-tracr submit -p kinds=...
    parameters = {p["name"]: p["value"] for p in body["spec"]["arguments"]["parameters"]}
    seen = _kinds_per_stage(docs, parameters)
    assert seen["train"] == seen["evaluate"] == submitted
    assert seen["distill"] == [k for k in submitted if k != "standard"]


def test_without_a_parameter_every_stage_sees_the_values_kinds():
    seen = _kinds_per_stage(render(sets=("zoo.kinds={standard,compressed}",)), {})
    assert seen == {"train": ["standard", "compressed"], "evaluate": ["standard", "compressed"], "distill": ["compressed"]}


def test_argo_holds_a_workflow_for_each_of_the_five_templates_of_a_release_called_inverse_tracr():
    templates = {d["metadata"]["name"]: d for d in argo_objects(render(release="inverse-tracr"))}
    assert set(templates) == {f"inverse-tracr-{s}" for s in STAGES}
    files = {path.stem: path for path in (ROOT / "argo").glob("*.yaml")}
    assert set(files) == set(STAGES)
    for stage, path in files.items():
        text = path.read_text()
        assert "release called\n# `inverse-tracr`" in text, path.name  # the assumption, stated
        workflow = yaml.safe_load(text)
        jsonschema.validate(workflow, argo_schema("Workflow"))
        target = templates[workflow["spec"]["workflowTemplateRef"]["name"]]
        assert target["metadata"]["name"] == f"inverse-tracr-{stage}" and workflow["metadata"]["generateName"] == f"inverse-tracr-{stage}-"
        declared = {p["name"] for p in target["spec"]["arguments"]["parameters"]}
        given = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
        assert set(given) <= declared, path.name
        if "kinds" in given:
            assert set(json.loads(given["kinds"])) <= {"standard", "compressed", "natural"}


@pytest.mark.parametrize(("release", "prefix"), [("zoo", "zoo-inverse-tracr"), ("inverse-tracr-dev", "inverse-tracr-dev")])
def test_other_release_names_name_the_templates_otherwise(release, prefix):
    docs = render(release=release)
    assert {d["metadata"]["name"] for d in argo_objects(docs)} == {f"{prefix}-{s}" for s in STAGES}
    refs = {t["templateRef"]["name"] for t in workflow_template(docs, "pipeline")["spec"]["templates"][0]["dag"]["tasks"]}
    assert refs == {f"{prefix}-{s}" for s in ("generate", "distill", "train", "evaluate")}  # the pipeline follows the release


@pytest.mark.parametrize(("transfer_steps", "augment"), [(300, ["hidden", "rotation"]), (0, [])])
def test_with_students_the_pipeline_trains_on_standard_models_first_as_the_local_runner_does(transfer_steps, augment, tmp_path):
    given = {"zoo": {"kinds": ["standard", "compressed"]},
             "training": {"run": "m", "steps": 900, "transferSteps": transfer_steps, "augment": augment, "oversample": 3}}
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(given))
    docs = render(str(path))
    pipeline = workflow_template(docs, "pipeline")
    values = {p["name"]: p["value"] for p in pipeline["spec"]["arguments"]["parameters"]}
    trainings = _trainings(docs, values)
    charted = [(a.run, tuple(a.kinds), a.steps, a.init_from, tuple(a.augment), a.oversample) for a in trainings.values()]
    local = [(c.run, c.kinds, c.steps, c.init_from, c.augment, c.oversample) for c in plan(load_values(str(path), "demo")).train]
    assert charted == local  # the same trainings, in the same order, with the same symmetries and oversampling
    assert {(c[4], c[5]) for c in local} == {(tuple(augment), 3)}
    local = [c[:4] for c in local]
    tasks = {t["name"]: t.get("dependencies", []) for t in pipeline["spec"]["templates"][0]["dag"]["tasks"]}
    if transfer_steps:
        assert local == [("m-standard", ("standard",), 900, None), ("m", ("standard", "compressed"), 300, "m-standard")]
        # the standard run trains while the students are distilled; each training has Jobs of its own
        assert tasks["train-standard"] == ["generate"] and tasks["train"] == ["distill", "train-standard"]
        job = training_job(docs)["metadata"]["name"]
        names = {fill(job, training_inputs(docs, {p["name"]: p["value"] for p in task["arguments"]["parameters"]}))
                 for task in pipeline["spec"]["templates"][0]["dag"]["tasks"] if task["name"] in trainings}
        assert names == {"{{workflow.name}}-train-standard-{{retries}}", "{{workflow.name}}-train-{{retries}}"}
    else:
        assert local == [("m", ("standard", "compressed"), 900, None)] and tasks["train"] == ["distill"]
    assert tasks["evaluate"] == ["train"]  # the last training is the one evaluated
