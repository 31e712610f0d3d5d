"""Zero to JupyterHub (z2jh) facts and the translation of TLJH's config.yaml to z2jh's.

z2jh's one hard rule for user images: their jupyterhub must be the version the chart's hub
runs. The chart -> jupyterhub table below is that fact, kept here and nowhere else.
"""

from __future__ import annotations

import os
import re
from collections import namedtuple

from tljh_admin.errors import UsageError
from tljh_admin.files import open_text
from tljh_admin.layout import CONFIG_DIR, CONFIG_FILE, EXTRA_CONFIG_DIR

# Chart release -> JupyterHub version of its hub image.
# Source: jupyterhub/zero-to-jupyterhub-k8s, jupyterhub/Chart.yaml `appVersion` at each
# release tag (2.0.0 to 4.4.0; tests compare it with ../shared/z2jh/chart-jupyterhub.tsv).
CHART_JUPYTERHUB = {
    "2.0.0": "3.0.0",
    "3.0.0": "4.0.2",
    "3.0.1": "4.0.2",
    "3.0.2": "4.0.2",
    "3.0.3": "4.0.2",
    "3.1.0": "4.0.2",
    "3.2.0": "4.0.2",
    "3.2.1": "4.0.2",
    "3.3.0": "4.1.0",
    "3.3.1": "4.1.0",
    "3.3.2": "4.1.0",
    "3.3.3": "4.1.1",
    "3.3.4": "4.1.2",
    "3.3.5": "4.1.3",
    "3.3.6": "4.1.4",
    "3.3.7": "4.1.5",
    "3.3.8": "4.1.6",
    "4.0.0": "5.2.1",
    "4.1.0": "5.2.1",
    "4.2.0": "5.3.0",
    "4.3.0": "5.4.0",
    "4.3.1": "5.4.1",
    "4.3.2": "5.4.3",
    "4.3.3": "5.4.4",
    "4.3.4": "5.4.5",
    "4.3.5": "5.4.6",
    "4.4.0": "5.5.0",
}


def jupyterhub_for_chart(chart: str) -> str:
    version = chart.strip().removeprefix("v")
    if version not in CHART_JUPYTERHUB:
        known = list(CHART_JUPYTERHUB)
        raise UsageError(
            f"unknown z2jh chart version {chart!r}",
            hint=f"this tljh-admin knows charts {known[0]} to {known[-1]}; see `helm search repo jupyterhub`",
        )
    return CHART_JUPYTERHUB[version]


# TLJH's defaults for what is translated (tljh/configurer.py, `default`): TLJH applies them
# when config.yaml says nothing, so the z2jh config carries them to behave the same.
TLJH_DEFAULTS = {
    "base_url": "/",
    "auth": {
        "type": "firstuseauthenticator.FirstUseAuthenticator",
        "FirstUseAuthenticator": {"create_users": False},
    },
    "users": {"allowed": [], "banned": [], "admin": []},
    "limits": {"memory": None, "cpu": None},
    "user_environment": {"default_app": "jupyterlab"},
    "services": {
        "cull": {
            "enabled": True,
            "timeout": 600,
            "every": 60,
            "concurrency": 5,
            "users": False,
            "max_age": 0,
            "remove_named_servers": False,
        }
    },
}

# tljh/configurer.py update_user_environment(): default_app -> Spawner.default_url
DEFAULT_APP_URLS = {"jupyterlab": "/lab", "classic": "/tree"}
# services.cull key -> z2jh cull key (z2jh values.schema.yaml, `cull`)
CULL_KEYS = {
    "enabled": "enabled",
    "timeout": "timeout",
    "every": "every",
    "concurrency": "concurrency",
    "users": "users",
    "max_age": "maxAge",
    "remove_named_servers": "removeNamedServers",
}
# Let's Encrypt's staging server, as z2jh's schema names it (proxy.https.letsencrypt.acmeServer)
LETSENCRYPT_STAGING = "https://acme-staging-v02.api.letsencrypt.org/directory"

# Settings that hold credentials: left out of the z2jh config unless --include-secrets.
# Judged on every key at any depth; when unsure a key is taken for a secret (a wrong guess only
# leaves a setting out, listed on stderr). `pw` as a word (ldapauthenticator's
# lookup_dn_search_pw), `key` as a word or suffix (api_key, clientKey) but not `keys` lists.
_SECRET_KEY = re.compile(
    r"secret|passw|passphrase|token|credential|cookie|(?:^|[_-])pw(?:$|[_-])|pw$|key(?:$|[_-]|file)",
    re.IGNORECASE,
)
_LEFT_OUT = "a secret: left out; pass --include-secrets to write it"


def _without_secrets(value, dotted: str, unmapped: list):
    """`value` with every secret-named key removed, at any depth (dicts, lists of dicts); each
    removed key's dotted path is added to `unmapped`."""
    if isinstance(value, dict):
        kept = {}
        for key, item in value.items():
            path = f"{dotted}.{key}"
            if _SECRET_KEY.search(str(key)):
                unmapped.append(Unmapped(path, _LEFT_OUT))
            else:
                kept[key] = _without_secrets(item, path, unmapped)
        return kept
    if isinstance(value, list):
        return [_without_secrets(item, f"{dotted}[{i}]", unmapped) for i, item in enumerate(value)]
    return value


# TLJH settings with no z2jh counterpart, and why (tljh/configurer.py and z2jh's schema).
NO_COUNTERPART = {
    "users.extra_user_groups": "Unix groups of TLJH's system users; z2jh's users have no Unix account",
    "http": "in Kubernetes the proxy's Service decides addresses and ports (proxy.service)",
    "https.port": "in Kubernetes the proxy's Service decides ports (proxy.service)",
    "https.address": "in Kubernetes the proxy's Service decides addresses (proxy.service)",
    "https.tls": "z2jh takes the certificate's contents, not paths: proxy.https.type manual, "
    "proxy.https.manual.cert/key",
    "traefik_api": "z2jh's proxy is configurable-http-proxy, not traefik",
}


class Unmapped(namedtuple("Unmapped", "key reason")):
    """A TLJH setting the z2jh config does not carry, and why."""

    __slots__ = ()


class Z2jhConfig(namedtuple("Z2jhConfig", "values unmapped")):
    __slots__ = ()


def read_tljh_config(prefix: str) -> tuple[dict, str]:
    """TLJH's config.yaml as written by the admin ({} when there is none), and its path."""
    path = os.path.join(prefix, CONFIG_DIR, CONFIG_FILE)
    try:
        with open_text(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        return {}, path
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error.strerror}", hint="run with sudo") from None
    except UnicodeDecodeError:
        raise UsageError(f"{path} is not UTF-8 text", hint="fix it with tljh-config") from None
    # ruamel.yaml: TLJH reads and writes config.yaml with it (tljh/yaml.py).
    from ruamel.yaml import YAML, YAMLError

    try:
        data = YAML(typ="safe", pure=True).load(text)
    except RecursionError:
        raise UsageError(
            f"{path} is nested too deeply to be TLJH's config", hint="fix it with tljh-config"
        ) from None
    except YAMLError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else "invalid YAML"
        raise UsageError(f"{path} is not valid YAML: {first}", hint="fix it with tljh-config") from None
    if data is None:
        return {}, path
    if not isinstance(data, dict):
        raise UsageError(f"{path} is not a mapping of settings", hint="fix it with tljh-config")
    wrong = _misshapen(data)
    if wrong:
        raise UsageError(f"{path}: {wrong[0]} is not {wrong[1]}", hint="fix it with tljh-config")
    return data, path


_NUMBER = (int, float)
# The shapes of the settings translate() reads (TLJH's tljh/config-schema.json and
# tljh/configurer.py): (dotted key, accepted types, in words). Absent or null is always fine.
_MAPPINGS = (
    "auth",
    "users",
    "limits",
    "user_environment",
    "services",
    "services.cull",
    "https",
    "https.letsencrypt",
)
_SHAPES = (
    *((key, (dict,), "a mapping") for key in _MAPPINGS),
    *((f"users.{key}", (list,), "a list of names") for key in ("allowed", "banned", "admin")),
    ("limits.memory", (str, *_NUMBER), "a size such as 4G"),
    ("limits.cpu", (*_NUMBER, str), "a number of CPUs"),
    ("base_url", (str,), "a URL path"),
    ("https.letsencrypt.domains", (list,), "a list of domains"),
    ("https.letsencrypt.email", (str,), "an email address"),
    ("auth.type", (str,), "an authenticator class name"),
    ("user_environment.default_app", (str,), "an app name such as jupyterlab"),
    # the idle culler's options (z2jh's schema: cull.timeout, every, concurrency, maxAge are
    # integers; enabled, users, removeNamedServers are booleans)
    *(
        (f"services.cull.{key}", (int,), "a whole number")
        for key in ("timeout", "every", "concurrency", "max_age")
    ),
    *(
        (f"services.cull.{key}", (bool,), "true or false")
        for key in ("enabled", "users", "remove_named_servers")
    ),
)


def _misshapen(data: dict) -> tuple[str, str] | None:
    """(dotted key, what it should be) for the first setting of another shape, or None."""
    odd = _odd_key(data, "")
    if odd is not None:
        return odd, "a setting name (text)"
    for key, types, words in _SHAPES:
        value = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if value is None:
            continue
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            return key, words
        # tljh-config stores an all-digit name (a student id) as a number
        if isinstance(value, list) and not all(
            isinstance(v, (str, int)) and not isinstance(v, bool) for v in value
        ):
            return key, words
        if key == "limits.cpu" and not _is_cpu_count(value):
            return key, words
    return None


def _odd_key(data: dict, above: str) -> str | None:
    """The first setting whose name is not text (`1:` in YAML is a number), as a dotted path,
    or one that holds a line break (it would end a comment in the export)."""
    for key, value in data.items():
        shown = f"{above}{key!r}" if not isinstance(key, str) else f"{above}{key}"
        if not isinstance(key, str) or "\n" in key or "\r" in key:
            return repr(shown)[:80]
        if isinstance(value, dict):
            found = _odd_key(value, shown + ".")
            if found is not None:
                return found
    return None


def _is_cpu_count(value) -> bool:
    """A finite number above 0, as a number or text (`cpu: 1e999` is no limit; a 400-digit
    one is no float)."""
    import math

    try:
        count = float(value)
    except (ValueError, OverflowError):
        return False
    return math.isfinite(count) and count > 0


def _merged(defaults: dict, overrides: dict) -> dict:
    """TLJH's own merge (tljh/configurer.py _merge_dictionaries): nested dicts merge, the
    rest is replaced."""
    out = dict(defaults)
    for key, value in overrides.items():
        if isinstance(out.get(key), dict) and isinstance(value, dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _leaves(data: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            keys.extend(_leaves(value, dotted + "."))
        else:
            keys.append(dotted)
    return keys


def translate(
    written: dict,
    image: tuple[str, str],
    include_secrets: bool = False,
    extra_config_files: tuple[str, ...] = (),
) -> Z2jhConfig:
    """z2jh values for what TLJH's config.yaml (`written`, as the admin wrote it) means,
    with TLJH's defaults applied as TLJH applies them; every setting not carried is listed."""
    config = _merged(TLJH_DEFAULTS, written)
    unmapped: list[Unmapped] = []
    carried: set[str] = set()  # dotted TLJH keys translated

    hub_config: dict = {}
    auth = config.get("auth") or {}
    authenticator = auth.get("type")
    if authenticator:
        hub_config["JupyterHub"] = {"authenticator_class": authenticator}
        carried.add("auth.type")
    for class_name, settings in auth.items():
        if class_name == "type":
            continue
        if not (class_name[:1].isupper() and isinstance(settings, dict)):
            continue  # TLJH refuses these itself (configurer.update_auth); listed below
        for key, value in settings.items():
            dotted = f"auth.{class_name}.{key}"
            if value is None:  # TLJH sets only what is not None (set_if_not_none)
                carried.add(dotted)
                continue
            if _SECRET_KEY.search(key) and not include_secrets:
                unmapped.append(Unmapped(dotted, _LEFT_OUT))
                carried.add(dotted)
                continue
            if not include_secrets:
                value = _without_secrets(value, dotted, unmapped)
            hub_config.setdefault(class_name, {})[key] = value
            carried.add(dotted)

    users = config.get("users") or {}
    authenticator_config = {}
    for tljh_key, z2jh_key in (
        ("allowed", "allowed_users"),
        ("banned", "blocked_users"),
        ("admin", "admin_users"),
    ):
        names = users.get(tljh_key) or []
        carried.add(f"users.{tljh_key}")
        if names:
            authenticator_config[z2jh_key] = [str(name) for name in names]
    if authenticator_config:
        hub_config["Authenticator"] = authenticator_config
    # tljh/configurer.py update_userlists(): the default authenticator with nobody allowed
    # lets everyone in (allow_all), as TLJH does.
    first_use = TLJH_DEFAULTS["auth"]["type"]
    if not users.get("allowed") and authenticator == first_use:
        class_config = hub_config.setdefault("FirstUseAuthenticator", {})
        class_config.setdefault("allow_all", True)

    values: dict = {"hub": {"baseUrl": str(config.get("base_url") or "/"), "config": hub_config}}
    carried.add("base_url")

    singleuser: dict = {"image": {"name": image[0], "tag": image[1]}}
    limits = config.get("limits") or {}
    if limits.get("memory") is not None:
        singleuser["memory"] = {"limit": limits["memory"]}
    if limits.get("cpu") is not None:
        singleuser["cpu"] = {"limit": float(limits["cpu"])}
    carried.update({"limits.memory", "limits.cpu"})
    default_app = (config.get("user_environment") or {}).get("default_app")
    if default_app in DEFAULT_APP_URLS:
        singleuser["defaultUrl"] = DEFAULT_APP_URLS[default_app]
        carried.add("user_environment.default_app")
    values["singleuser"] = singleuser

    cull = (config.get("services") or {}).get("cull") or {}
    values["cull"] = {CULL_KEYS[k]: v for k, v in cull.items() if k in CULL_KEYS and v is not None}
    carried.update(f"services.cull.{k}" for k in CULL_KEYS)

    https = config.get("https") or {}
    letsencrypt = https.get("letsencrypt") or {}
    carried.add("https.enabled")
    if https.get("enabled") and letsencrypt.get("email") and letsencrypt.get("domains"):
        proxy_https: dict = {
            "enabled": True,
            "type": "letsencrypt",
            "hosts": list(letsencrypt["domains"]),
            "letsencrypt": {"contactEmail": letsencrypt["email"]},
        }
        if letsencrypt.get("staging"):
            proxy_https["letsencrypt"]["acmeServer"] = LETSENCRYPT_STAGING
        values["proxy"] = {"https": proxy_https}
        carried.update(f"https.letsencrypt.{k}" for k in ("email", "domains", "staging"))

    for key in _leaves(written):
        if key in carried or any(key.startswith(f"{c}.") for c in carried):
            continue  # a key inside a carried setting is carried (or listed) with it
        reason = next(
            (why for prefix, why in NO_COUNTERPART.items() if key == prefix or key.startswith(prefix + ".")),
            None,
        )
        if reason is None and key.startswith("https.letsencrypt"):
            reason = "Let's Encrypt in z2jh needs https.enabled, an email and domains together"
        unmapped.append(Unmapped(key, reason or "no z2jh counterpart known to tljh-admin"))
    if not include_secrets:  # whatever else carried a secret-named key on the way
        values = _without_secrets(values, "z2jh", unmapped)
    for path in extra_config_files:
        unmapped.append(
            Unmapped(path, "Python hub configuration: review it and move it to hub.extraConfig by hand")
        )
    return Z2jhConfig(values, tuple(unmapped))


def extra_config_files(prefix: str) -> tuple[str, ...]:
    folder = os.path.join(prefix, CONFIG_DIR, EXTRA_CONFIG_DIR)
    try:
        names = sorted(n for n in os.listdir(folder) if n.endswith(".py"))
    except OSError:
        return ()
    return tuple(os.path.join(folder, n) for n in names)
