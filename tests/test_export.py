"""`tljh env export`: lock, requirements, environment.yml, repo2docker and z2jh-config, on the
suite's real prefixes, checked by the tools of the field: pip (freeze, as the oracle),
repo2docker's own detection and Dockerfile rendering, and a JSON-schema validator with
z2jh's values schema."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from tests.support import prefixes
from tests.support.listing import file_listing, listing_diff
from tests.support.vcs import git_project
from tests.support.wheels import WheelSpec, build_wheel
from tljh_admin import export, z2jh
from tljh_admin.errors import UsageError
from tljh_admin.layout import resolve_layout

SHARED_Z2JH = Path(__file__).resolve().parents[2] / "shared" / "z2jh"


def _layout(prefix: Path, system_python: Path):
    return resolve_layout(prefix, system_python)


def _canon(name: str) -> str:
    from packaging.utils import canonicalize_name

    return canonicalize_name(name)


def _project(requirement_line: str) -> str:
    return _canon(re.split(r"==| @ ", requirement_line)[0])


@pytest.fixture
def carrying_prefix(prefix, wheelhouse, tmp_path):
    """The suite's prefix, whose user env also carries what a real one does: a package
    installed from a wheel file on this server, an admin's own kernelspec and Jupyter config."""
    user = prefix / "user"
    local = build_wheel(WheelSpec("course-tools", "0.3.0"), tmp_path / "local-wheels")
    prefixes.pip_install(user, wheelhouse, str(local))
    repo, commit = git_project(tmp_path / "course-helpers", "course-helpers", "1.0.0")
    prefixes.pip_install(user, wheelhouse, f"git+file://{repo}@{commit}")
    (tmp_path / "course-helpers-commit").write_text(commit)
    kernel = user / "share" / "jupyter" / "kernels" / "course-r"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(
        json.dumps({"argv": [f"{user}/bin/R", "--slave", "-f", "{connection_file}"], "display_name": "R"})
    )
    config = user / "etc" / "jupyter" / "jupyter_server_config.d"
    config.mkdir(parents=True)
    (config / "course.json").write_text('{"ServerApp": {"iopub_data_rate_limit": 1e10}}\n')
    return prefix


@pytest.mark.floor
def test_lock_requirements_and_environment_yml(carrying_prefix, system_python):
    layout = _layout(carrying_prefix, system_python)
    user = carrying_prefix / "user"
    document = export.export_lock(layout, "user")

    assert document["schema"] == "tljh-admin/env-lock" and document["version"] == 1
    assert set(document) == {"schema", "version", "environment", "kind", "python", "platform", "packages"}
    assert document["python"].count(".") == 2
    # deterministic: nothing of this server's paths or time in it
    assert str(carrying_prefix) not in json.dumps({k: v for k, v in document.items() if k != "packages"})
    assert export.export_lock(layout, "user") == document
    by_name = {_canon(p["name"]): p for p in document["packages"]}
    # pip's own view is the oracle: same projects, same versions
    assert {(k, p["version"]) for k, p in by_name.items()} == prefixes.pip_list(user)
    assert by_name["numpy"]["source"] == {"type": "index"}  # --find-links counts as an index
    assert by_name["course-tools"]["source"]["type"] == "file"
    assert by_name["course-tools"]["source"]["path"].endswith("course_tools-0.3.0-py3-none-any.whl")
    assert by_name["course-tools"]["source"]["hash"].startswith("sha256=")
    helpers = by_name["course-helpers"]["source"]
    assert helpers["type"] == "vcs" and helpers["vcs"] == "git"
    assert helpers["commit"] == (carrying_prefix.parent / "course-helpers-commit").read_text()
    # pip's REQUESTED marker: what the admin asked for, not what came as a dependency
    assert {k for k, p in by_name.items() if p["requested"]} >= {"jupyterhub", "jupyterlab", "numpy"}
    assert not by_name["traitlets"]["requested"]

    freeze = prefixes.run([user / "bin" / "python3", "-m", "pip", "freeze", "--all"]).stdout
    assert "course-tools @ file://" in freeze  # the junk TLJH#824 is about...
    text = export.export_text(layout, "user", export.REQUIREMENTS, False)
    assert "@ file://" not in text.text  # ...never written by us
    lines = {line for line in text.text.splitlines() if line and not line.startswith("#")}
    assert {_project(line) for line in lines} == {_project(line) for line in freeze.splitlines()}
    assert "course-tools==0.3.0" in lines
    assert f"course-helpers @ git+{helpers['url']}@{helpers['commit']}" in lines
    assert any("course-tools 0.3.0 was installed from" in n for n in text.notes)
    assert any("course-helpers comes from a git repository on this server" in n for n in text.notes)

    requested = export.export_text(layout, "user", export.REQUIREMENTS, True)
    names = {_canon(line.split("==")[0]) for line in requested.text.splitlines() if "==" in line}
    assert "traitlets" not in names and {"jupyterhub", "numpy"} <= names

    from ruamel.yaml import YAML

    yml = YAML(typ="safe").load(export.export_text(layout, "user", export.ENVIRONMENT_YML, False).text)
    short = ".".join(document["python"].split(".")[:2])
    assert yml["dependencies"][:2] == [f"python={short}", "pip"]
    assert "numpy==1.26.4" in yml["dependencies"][2]["pip"]


def _detect_and_render(folder: Path):
    """repo2docker's own choice of buildpack for `folder`, and its Dockerfile (no daemon)."""
    from repo2docker.app import Repo2Docker

    app = Repo2Docker()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        picked = next(bp for bp in (BP(base_image=app.base_image) for BP in app.buildpacks) if bp.detect())
        picked.platform = app.platform
        return picked, picked.render()
    finally:
        os.chdir(cwd)


def test_repo2docker_detects_and_renders_the_export(carrying_prefix, system_python, tmp_path):
    from repo2docker.buildpacks import CondaBuildPack, PythonBuildPack

    layout = _layout(carrying_prefix, system_python)
    folder = tmp_path / "image"
    exported = export.export_repo2docker(layout, "user", str(folder), "4.3.0")
    assert exported.jupyterhub == "5.4.0" == z2jh.CHART_JUPYTERHUB["4.3.0"]
    assert any("jupyterhub 5.2.1 in the environment is written as 5.4.0" in n for n in exported.notes)

    buildpack, dockerfile = _detect_and_render(folder)
    assert type(buildpack) is PythonBuildPack
    lock = export.export_lock(layout, "user")
    assert buildpack.python_version == ".".join(lock["python"].split(".")[:2])
    assert 'pip install --no-cache-dir -r "requirements.txt"' in dockerfile
    requirements = (folder / "requirements.txt").read_text().splitlines()
    assert "jupyterhub==5.4.0" in requirements
    assert not any(r.startswith("jupyterhub==5.2") for r in requirements)
    assert "RUN ./postBuild" in dockerfile
    assert os.access(folder / "postBuild", os.X_OK)
    # the admin's kernelspec travels, its path made the image's; ipykernel-owned ones do not
    kernel = (folder / "tljh-user-env/share/jupyter/kernels/course-r/kernel.json").read_text()
    assert str(carrying_prefix) not in kernel and export.PREFIX_PLACEHOLDER in kernel
    shipped = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert shipped == {
        "runtime.txt",
        "requirements.txt",
        "postBuild",
        "tljh-user-env/share/jupyter/kernels/course-r/kernel.json",
        "tljh-user-env/etc/jupyter/jupyter_server_config.d/course.json",
    }
    # postBuild really puts them in place, on a stand-in for the image's NB_PYTHON_PREFIX
    image_prefix = tmp_path / "srv-conda-envs-notebook"
    image_prefix.mkdir()
    prefixes.run(["bash", "postBuild"], cwd=folder, env={**os.environ, "NB_PYTHON_PREFIX": str(image_prefix)})
    placed = json.loads((image_prefix / "share/jupyter/kernels/course-r/kernel.json").read_text())
    assert placed["argv"][0] == f"{image_prefix}/bin/R"

    # default: the hub's own jupyterhub; and a conda-style export is taken by the conda buildpack
    default = export.plan_repo2docker(layout, "user", None)
    assert default.jupyterhub == "5.2.1" and default.image_tag != exported.image_tag
    yml_folder = tmp_path / "as-conda"
    yml_folder.mkdir()
    lock = export.lock_of_target(layout, "user")
    yml = export.environment_yml_text(lock, replace={"jupyterhub": "5.4.0"})
    (yml_folder / "environment.yml").write_text(yml.text)
    buildpack, dockerfile = _detect_and_render(yml_folder)
    assert type(buildpack) is CondaBuildPack
    assert 'env update -p ${NB_PYTHON_PREFIX} --file "environment.yml"' in dockerfile
    assert "jupyterhub==5.4.0" in (yml_folder / "environment.yml").read_text()


def _overlay_schema() -> dict:
    """z2jh's values schema, as it applies to a config.yaml: helm merges the file onto the
    chart's values.yaml, which provides every top-level section, so only the root's
    `required` list is dropped; types, enums and additionalProperties stay."""
    from ruamel.yaml import YAML

    schema = YAML(typ="safe").load((SHARED_Z2JH / "values.schema.yaml").read_text())
    schema.pop("required")
    return schema


TLJH_CONFIG = """\
auth:
  type: oauthenticator.github.GitHubOAuthenticator
  GitHubOAuthenticator:
    client_id: abc123
    client_secret: s3cr3t-value
    oauth_callback_url: https://hub.example.org/hub/oauth_callback
    allowed_organizations: [course-org]
users:
  admin: [teacher]
  allowed: [alice, bob]
  extra_user_groups:
    course: [alice]
limits:
  memory: 2G
  cpu: 1.5
user_environment:
  default_app: classic
services:
  cull:
    timeout: 1800
    every: 120
http:
  port: 8080
https:
  enabled: true
  letsencrypt:
    email: admin@example.org
    domains: [hub.example.org]
some_plugin_setting: 3
"""


@pytest.mark.floor
def test_z2jh_config_passes_z2jh_schema_and_lists_what_it_leaves(prefix, system_python):
    import jsonschema
    from ruamel.yaml import YAML

    (prefix / "config" / "jupyterhub_config.d").mkdir(parents=True)
    (prefix / "config" / "config.yaml").write_text(TLJH_CONFIG)
    (prefix / "config" / "jupyterhub_config.d" / "course.py").write_text("c.Spawner.environment = {}\n")
    layout = _layout(prefix, system_python)

    text, translation = export.export_z2jh_config(layout, "user", "4.3.0", None, include_secrets=False)
    values = YAML(typ="safe").load(text)
    jsonschema.Draft7Validator(_overlay_schema()).validate(values)
    assert "s3cr3t" not in text
    hub = values["hub"]["config"]
    assert hub["JupyterHub"]["authenticator_class"] == "oauthenticator.github.GitHubOAuthenticator"
    assert hub["GitHubOAuthenticator"]["allowed_organizations"] == ["course-org"]
    assert hub["Authenticator"] == {"allowed_users": ["alice", "bob"], "admin_users": ["teacher"]}
    assert values["singleuser"]["memory"] == {"limit": "2G"}
    assert values["singleuser"]["cpu"] == {"limit": 1.5}
    assert values["singleuser"]["defaultUrl"] == "/tree"
    # TLJH's culler defaults fill what config.yaml leaves out, as TLJH does
    assert values["cull"] == {
        "enabled": True,
        "timeout": 1800,
        "every": 120,
        "concurrency": 5,
        "users": False,
        "maxAge": 0,
        "removeNamedServers": False,
    }
    assert values["proxy"]["https"]["hosts"] == ["hub.example.org"]
    # the image is the one the repo2docker export of the same chart builds
    image_tag = export.plan_repo2docker(layout, "user", "4.3.0").image_tag
    assert values["singleuser"]["image"] == {"name": "tljh-user-env", "tag": image_tag}
    assert "jupyterhub 5.4.0" in text.splitlines()[1]

    unmapped = {u.key for u in translation.unmapped}
    assert unmapped == {
        "auth.GitHubOAuthenticator.client_secret",
        "users.extra_user_groups.course",
        "http.port",
        "some_plugin_setting",
        str(prefix / "config" / "jupyterhub_config.d" / "course.py"),
    }

    image = "ghcr.io/uni/course:v1"
    text, _ = export.export_z2jh_config(layout, "user", "4.3.0", image, include_secrets=True)
    values = YAML(typ="safe").load(text)
    jsonschema.Draft7Validator(_overlay_schema()).validate(values)
    assert values["hub"]["config"]["GitHubOAuthenticator"]["client_secret"] == "s3cr3t-value"
    assert values["singleuser"]["image"] == {"name": "ghcr.io/uni/course", "tag": "v1"}


def test_default_tljh_config_is_a_valid_z2jh_config(prefix, system_python):
    import jsonschema
    from ruamel.yaml import YAML

    layout = _layout(prefix, system_python)
    text, translation = export.export_z2jh_config(layout, "user", None, "reg:5000/img", False)
    values = YAML(typ="safe").load(text)
    jsonschema.Draft7Validator(_overlay_schema()).validate(values)
    assert values["hub"]["config"]["FirstUseAuthenticator"] == {"create_users": False, "allow_all": True}
    assert values["singleuser"]["defaultUrl"] == "/lab"
    assert values["singleuser"]["image"]["name"] == "reg:5000/img"  # a registry port is not a tag
    assert translation.unmapped == ()
    # without --z2jh-chart the hub's own jupyterhub is carried, and the header says which
    # chart runs it (5.2.1: charts 4.0.0 and 4.1.0), or that none known here does
    assert "# jupyterhub 5.2.1: the hub's own, as z2jh chart 4.1.0 runs it" in text


def test_a_hub_jupyterhub_no_chart_runs_is_said(prefix, system_python, monkeypatch):
    from tljh_admin import z2jh

    # the table as if no chart ran the hub's 5.2.1 (a hub newer than every chart known here)
    monkeypatch.setattr(z2jh, "CHART_JUPYTERHUB", {"4.4.0": "5.5.0"})
    text, _ = export.export_z2jh_config(_layout(prefix, system_python), "user", None, None, False)
    assert "jupyterhub 5.2.1: the hub's own, which no z2jh chart known here runs" in text
    assert "pass --z2jh-chart (the newest known: 4.4.0, jupyterhub 5.5.0)" in text


def test_chart_table_matches_the_chart_releases():
    rows = [
        line.split("\t")
        for line in (SHARED_Z2JH / "chart-jupyterhub.tsv").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert rows[0] == ["chart", "jupyterhub", "date"]
    assert {chart: hub for chart, hub, _ in rows[1:]} == z2jh.CHART_JUPYTERHUB


def test_bad_input_changes_nothing(carrying_prefix, system_python, tmp_path):
    layout = _layout(carrying_prefix, system_python)
    occupied = tmp_path / "occupied"
    occupied.mkdir()
    (occupied / "keep.txt").write_text("mine\n")
    (carrying_prefix / "config").mkdir()
    (carrying_prefix / "config" / "config.yaml").write_text("auth: [unclosed\n")
    before = file_listing(tmp_path, contents=True)
    with pytest.raises(UsageError, match="not an empty folder"):
        export.export_repo2docker(layout, "user", str(occupied), None)
    with pytest.raises(UsageError, match=r"unknown z2jh chart version '9\.9\.9'"):
        export.export_repo2docker(layout, "user", str(tmp_path / "new"), "9.9.9")
    with pytest.raises(UsageError, match="exports the user environment"):
        export.export_repo2docker(layout, "hub", str(tmp_path / "new"), None)
    with pytest.raises(UsageError, match="not valid YAML"):
        export.export_z2jh_config(layout, "user", None, None, False)
    assert listing_diff(before, file_listing(tmp_path, contents=True)) == []
    # config.yaml of other shapes than TLJH writes: one line each, never a traceback
    config = carrying_prefix / "config" / "config.yaml"
    for text, words in (
        ("auth: 5\n", "auth is not a mapping"),
        ("users: {admin: 5}\n", "users.admin is not a list of names"),
        ("limits: {cpu: lots}\n", "limits.cpu is not a number of CPUs"),
        # before: an OverflowError traceback, and `limit: .inf` written out
        ("limits: {cpu: " + "9" * 400 + "}\n", "limits.cpu is not a number of CPUs"),
        ("limits: {cpu: 1e999}\n", "limits.cpu is not a number of CPUs"),
        ("limits: {cpu: -2}\n", "limits.cpu is not a number of CPUs"),
        ("https: {letsencrypt: {domains: example.org}}\n", "https.letsencrypt.domains is not a list"),
        # before: tracebacks, or values z2jh's schema rejects written out
        ("auth: {1: {a: b}}\n", "auth.1' is not a setting name"),
        ("auth: {type: 123}\n", "auth.type is not an authenticator class"),
        ("user_environment: {default_app: [1]}\n", "user_environment.default_app is not an app name"),
        ("services: {cull: {timeout: abc}}\n", "services.cull.timeout is not a whole number"),
        ("services: {cull: {users: 'yes'}}\n", "services.cull.users is not true or false"),
        ("services: {cull: {max_age: 1.5}}\n", "services.cull.max_age is not a whole number"),
        ('auth: {"Native\\nAuthenticator": {a: b}}\n', r"Native\\nAuthenticator' is not a setting name"),
        ("limits: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    ):
        config.write_text(text)
        with pytest.raises(UsageError, match=words):
            export.export_z2jh_config(layout, "user", None, None, False)
    config.write_bytes(b"\xff\xfe")
    with pytest.raises(UsageError, match="is not UTF-8 text"):
        export.export_z2jh_config(layout, "user", None, None, False)
    config.write_text("users: {admin: [20231234, ada]}\n")  # tljh-config keeps digits a number
    text, _ = export.export_z2jh_config(layout, "user", None, None, False)
    assert "- '20231234'" in text or '- "20231234"' in text, text


def test_conda_env_lock_and_repo2docker(conda_prefix, system_python, tmp_path):
    """A conda user env (real conda packages from the session's channel, linked by the
    stand-in): conda packages locked with channel and build, as `conda list` reports them;
    the repo2docker export is an environment.yml that the conda buildpack takes."""
    from repo2docker.buildpacks import CondaBuildPack
    from ruamel.yaml import YAML

    from tests.support.conda_fixtures import conda_list

    layout = _layout(conda_prefix, system_python)
    document = export.export_lock(layout, "user")
    assert document["kind"] == "conda"
    locked = {
        (p["name"], p["version"], p["source"]["build"])
        for p in document["packages"]
        if p["manager"] == "conda"
    }
    listed = conda_list(conda_prefix / "user")
    assert locked == {(r["name"], r["version"], r["build_string"]) for r in listed if r["channel"] != "pypi"}
    pip_only = {_canon(p["name"]) for p in document["packages"] if p["manager"] == "pip"}
    assert {_canon(r["name"]) for r in listed if r["channel"] == "pypi"} == pip_only
    assert "numpy" not in pip_only and "jupyterhub" in pip_only  # numpy is conda's here
    by_name = {p["name"]: p for p in document["packages"]}
    assert by_name["numpy"]["source"]["subdir"] == "linux-64"
    # the channel as conda names it: the env's .condarc maps conda-forge to the local channel
    assert {p["source"]["channel"] for p in document["packages"] if p["manager"] == "conda"} == {
        "conda-forge"
    }
    assert by_name["numpy"]["requested"]  # asked for when the env was created

    folder = tmp_path / "image"
    exported = export.export_repo2docker(layout, "user", str(folder), "4.2.0")
    assert exported.buildpack == "conda" and exported.jupyterhub == "5.3.0"
    yml = YAML(typ="safe").load((folder / "environment.yml").read_text())
    assert yml["channels"] == ["conda-forge"]
    names = [d.split("=")[0] for d in yml["dependencies"] if isinstance(d, str)]
    assert "numpy" in names and "python" in names
    assert "conda" not in names and "mamba" not in names  # TLJH's own installers stay behind
    assert "jupyterhub==5.3.0" in yml["dependencies"][-1]["pip"]
    buildpack, dockerfile = _detect_and_render(folder)
    assert type(buildpack) is CondaBuildPack
    assert buildpack.python_version == ".".join(document["python"].split(".")[:2])
    assert 'env update -p ${NB_PYTHON_PREFIX} --file "environment.yml"' in dockerfile


@pytest.mark.floor
def test_export_command_line(tljh, prefix, tmp_path):
    """The real command: data on stdout or in the named file, notes and unmapped settings on
    stderr, the fast path's lock byte-identical to Typer's, bad input a one-line error."""
    base = ("--prefix", prefix, "env", "export", "--target", "user")
    fast = tljh(*base)
    slow = tljh(*base, "--format", "lock", env={"TLJH_ADMIN_FASTPATH": "0"})
    assert fast.code == slow.code == 0 and fast.stdout == slow.stdout and fast.stderr == ""
    assert json.loads(fast.stdout)["schema"] == "tljh-admin/env-lock"

    requirements = tljh(*base, "--format", "requirements", "--requested")
    assert requirements.code == 0 and "numpy==1.26.4" in requirements.stdout
    assert "traitlets" not in requirements.stdout

    (prefix / "config").mkdir()
    (prefix / "config" / "config.yaml").write_text(TLJH_CONFIG)
    config = tmp_path / "config.yaml"
    z2jh_run = tljh(*base, "--format", "z2jh-config", config, "--z2jh-chart", "4.3.0")
    assert z2jh_run.code == 0 and z2jh_run.stdout == ""
    assert "not carried to z2jh: http.port" in z2jh_run.stderr
    assert "not carried to z2jh: auth.GitHubOAuthenticator.client_secret (a secret" in z2jh_run.stderr
    assert "# not carried to z2jh: http.port" in config.read_text()  # in the file too
    # a name with a line break: the `wrote` line stays one line (before: the break went raw)
    odd = tmp_path / "z2jh\nvalues.yaml"
    odd_run = tljh(*base, "--format", "z2jh-config", odd, "--z2jh-chart", "4.3.0")
    wrote = [line for line in odd_run.stderr.splitlines() if line.startswith("wrote ")]
    assert odd_run.code == 0 and odd.is_file() and wrote == [f"wrote '{tmp_path}/z2jh\\nvalues.yaml'"], wrote
    assert oct(config.stat().st_mode & 0o777) == "0o600"  # the hub's settings: owner-only always
    tljh(*base, "--format", "z2jh-config", config, "--include-secrets")
    assert oct(config.stat().st_mode & 0o777) == "0o600" and "s3cr3t-value" in config.read_text()

    image = tmp_path / "image"
    r2d = tljh(*base, "--format", "repo2docker", image, "--z2jh-chart", "4.3.0")
    assert r2d.code == 0 and (image / "requirements.txt").is_file()
    tag = export.plan_repo2docker(resolve_layout(prefix, None), "user", "4.3.0").image_tag
    assert f"--image-name tljh-user-env:{tag} {image}" in r2d.stderr

    # a symlink is neither followed nor replaced: `/dev/stdout` is one, and replacing it
    # made a regular file of every process's standard output
    stdout_like = tmp_path / "stdout"
    stdout_like.symlink_to("/proc/self/fd/1")
    before = file_listing(tmp_path, contents=True)
    for args, words in (
        (
            ("--format", "requirements", stdout_like),
            "is a symlink; tljh-admin neither follows nor replaces one",
        ),
        (("--format", "lock", ""), "an empty file name"),
        (("--format", "repo2docker", image), "exists and is not an empty folder"),
        (("--format", "repo2docker"), "needs a folder to write"),
        (("--format", "repo2docker", "-"), "needs a folder to write"),
        (("--format", "z2jh-config", "--image", " a b"), "is not an image name"),
        (("--format", "z2jh-config", "--image", "course:"), "is not an image name"),
        (("--format", "repo2docker", tmp_path / "new", "--z2jh-chart", "1.0"), "unknown z2jh chart version"),
        (("--format", "lock", "--requested"), "--requested applies to"),
        (("--format", "lock", "--z2jh-chart", "4.3.0"), "applies to --format repo2docker and z2jh-config"),
        (("--format", "repo2docker", image, "--include-secrets"), "--include-secrets applies to --format z"),
        (("--format", "pdf"), "'pdf' is not one of"),
    ):
        result = tljh(*base, *args)
        assert (result.code, result.stdout) == (2, ""), (args, result.stderr)
        assert words in result.stderr, result.stderr
    assert listing_diff(before, file_listing(tmp_path, contents=True)) == []


_WRONG_SHAPES = [
    "[1]",
    '{"url": 5}',
    '{"url": "git+https://example.org/x", "vcs_info": 7}',
    '{"url": "git+https://example.org/x", "vcs_info": {"vcs": "git"}}',
    '{"url": "file:///tmp/x.whl", "archive_info": {"hashes": 5}}',
    '{"url": "file:///tmp/x", "dir_info": {"editable": "yes"}}',
    '{"url": "https://example.org/x.whl", "archive_info": {}, "dir_info": {}}',
]


def test_a_direct_url_json_of_the_wrong_shape_is_an_unknown_source_not_a_crash(carrying_prefix, tljh):
    """Before: `env export` ended in a traceback on a direct_url.json that is JSON but not
    PEP 610's shape (a hand edit, a damaged disk). Its source is now `unknown`, as for one
    that cannot be read, and `env rebuild`'s plan says that it takes it from the index."""
    from tljh_admin.rebuild import UNKNOWN_ORIGIN, InstalledDist, read_origin, requirement_line

    (dist_info,) = (carrying_prefix / "user").glob("lib/python3.*/site-packages/course_helpers-*.dist-info")
    direct_url = dist_info / "direct_url.json"
    for shape in _WRONG_SHAPES:
        direct_url.unlink()  # pip wrote it in this test's own prefix; replaced, not written through
        direct_url.write_text(shape)
        result = tljh("--prefix", carrying_prefix, "env", "export", "-t", "user", "--format", "lock")
        assert result.code == 0 and "Traceback" not in result.stderr, (shape, result.stderr)
        (package,) = [p for p in json.loads(result.stdout)["packages"] if p["name"] == "course-helpers"]
        assert package["source"] == {"type": "unknown"}, shape
        origin = read_origin(str(dist_info))
        assert origin.kind == UNKNOWN_ORIGIN and origin.problem, shape
        line, note = requirement_line(InstalledDist("course-helpers", "1.0.0", True, origin, ()))
        assert line == "course-helpers==1.0.0" and "direct_url.json is damaged" in note, (shape, note)


def test_a_conda_meta_this_user_cannot_read_stops_the_export(conda_base_prefix, open_tmp, nobody_python):
    """Before: as a user who cannot read conda-meta/, `env export` wrote a lock without any
    conda package, exit 0: applied elsewhere, it would build another environment."""
    import shutil
    import subprocess

    from tests.conftest import NOBODY
    from tljh_admin.errors import ExitCode

    dest = open_tmp / "conda-meta-closed" / "opt tljh"
    dest.parent.mkdir()
    dest.parent.chmod(0o755)
    try:
        prefixes.copy_prefix(conda_base_prefix, dest)
        (dest / "user" / "conda-meta").chmod(0o700)  # root's alone, as a root umask of 077 leaves it
        proc = subprocess.run(
            [*NOBODY, nobody_python, "-m", "tljh_admin", "--prefix", dest, "env", "export", "-t", "user"],
            capture_output=True,
            text=True,
            env=prefixes.hermetic_env(),
        )
        assert proc.returncode == ExitCode.PERMISSION_DENIED, (proc.stdout[-300:], proc.stderr)
        (line,) = proc.stderr.splitlines()
        assert "conda-meta" in line and "run with sudo" in line and proc.stdout == ""
    finally:
        shutil.rmtree(dest.parent)
