"""`hdenv loaded --hash`: one profile equal to everything loaded in this shell.

A bug reporter with five things loaded shares one hash: the profile whose
artifacts are the union of the loaded profiles' (and packages'), and whose
environment settings are theirs in load order (a later load's value wins, as
it did in the shell). It is made in the store like any profile, so `hdenv load
HASH` brings the same programs back, and `export`/`push` carry it elsewhere
for `reproduce HASH`. Packages a compiler swap set aside are not loaded and do
not count.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import UserError
from ..profile.profiles import create_profile, profile_hash, profile_spec
from ..store.layout import Store
from .catalog import loaded_records


def loaded_state(store: Store, env: Mapping[str, str]) -> str:
    """The hash of the profile equal to the loaded state (made if missing)."""
    records = loaded_records(env)
    if not records:
        raise UserError("nothing is loaded in this shell: there is no state to hash")
    artifacts: set[str] = set()
    settings: dict[str, str] = {}
    for record in records:
        spec = store.read_spec(record.hash)
        if not isinstance(spec, dict) or spec.get("kind") != "profile":
            raise UserError(f"{record.ref}: {record.hash} is not a profile in this store")
        artifacts.update(str(a) for a in spec.get("artifacts", []))
        settings.update({str(k): str(v) for k, v in (spec.get("env") or {}).items()})
    if len(records) == 1:
        return records[0].hash  # one profile is its own state, family and all
    spec = profile_spec(sorted(artifacts), settings, None)
    create_profile(store, spec, loaded_state=True)  # kept by gc while its artifacts are
    return profile_hash(spec)
