"""`--sbom spdx|cyclonedx`: the closure as an SPDX 2.3 or CycloneDX 1.5 JSON document.

One package (component) per artifact with its name, version, store path in
the image, artifact id, the source keys of its spec as checksums (sha256
archives) or git commits, and the download URLs recorded in
`specs/HASH.hints.json`; one per host file copied in (the C library, the
loader, the programs host artifacts point to) with its sha256; dependency
relations from the runtime graph. Everything is derived from the store and
the profile hash, never from the time or the machine, so the document is
the same each time (it is inside the image, and the image's digest must not
change): `created` is the epoch or SOURCE_DATE_EPOCH, and the document's
namespace / serial number are derived from the profile hash.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

from .. import __version__
from ..hostpkgs import HostPackage, owners
from ..store.hashing import sha256_file
from ..store.layout import Store
from .closure import Closure
from .image import created
from .sysfiles import SystemFiles
from .trees import TreeReader

NAMESPACE = uuid.UUID("6c6b2a55-55a8-4c2e-9b39-0c0f3d6c1a70")  # hdenv's: serials are uuid5 under it


def file_name(kind: str) -> str:
    return "sbom.spdx.json" if kind == "spdx" else "sbom.cdx.json"


def _sources(store: Store, aid: str) -> list[dict[str, Any]]:
    """[{key, urls, git}] of an artifact's spec, with the recorded URL hints."""
    hash_ = aid.rsplit("/", 1)[-1]
    try:
        spec = store.read_spec(hash_)
    except (OSError, ValueError):
        return []
    try:
        hints = json.loads(store.hints_path(hash_).read_bytes())
    except (OSError, ValueError):
        hints = {}
    out = []
    for src in spec.get("sources") or []:
        key = str(src.get("key", ""))
        hint = hints.get(key) or {}
        out.append({"key": key, "urls": [str(u) for u in hint.get("urls") or []],
                    "git": hint.get("git")})
    return out


def _spdx_id(text: str) -> str:
    return "SPDXRef-" + "".join(c if c.isalnum() or c in ".-" else "-" for c in text)


def document(store: Store, closure: Closure, system: SystemFiles, kind: str,
             reader: TreeReader) -> bytes:
    host = owners(sorted(system.files))
    doc = _spdx(store, closure, system, reader, host) if kind == "spdx" else _cyclonedx(
        store, closure, system, reader, host)
    return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


def _spdx(store: Store, closure: Closure, system: SystemFiles, reader: TreeReader,
          host: list[HostPackage]) -> dict[str, Any]:
    packages: list[dict[str, Any]] = []
    relationships: list[dict[str, str]] = []
    root_id = _spdx_id(f"profile-{closure.hash}")
    packages.append({
        "SPDXID": root_id, "name": f"hdenv-profile-{closure.hash}", "versionInfo": closure.hash,
        "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
        "primaryPackagePurpose": "CONTAINER",
        "comment": f"hdenv profile at {reader.image_path(closure.path)}"})
    relationships.append({"spdxElementId": "SPDXRef-DOCUMENT", "relationshipType": "DESCRIBES",
                          "relatedSpdxElement": root_id})
    ids = {p.ident for p in closure.parts}
    for part in closure.parts:
        name, version, h = part.ident.split("/")
        pid = _spdx_id(f"{name}-{version}-{h}")
        sources = _sources(store, part.ident)
        urls = [u for s in sources for u in s["urls"]]
        pkg: dict[str, Any] = {
            "SPDXID": pid, "name": name, "versionInfo": version,
            "downloadLocation": urls[0] if urls else "NOASSERTION", "filesAnalyzed": False,
            "comment": f"hdenv artifact {part.ident} at {reader.image_path(part.path)}",
        }
        checks = [{"algorithm": "SHA256", "checksumValue": s["key"][7:]}
                  for s in sources if s["key"].startswith("sha256:")]
        if checks:
            pkg["checksums"] = checks
        if part.kind == "host":
            pkg["supplier"] = "Organization: host system"
            pkg["comment"] += " (host software)"
        gits = [s["key"] for s in sources if s["key"].startswith("git:")]
        if gits:
            pkg["sourceInfo"] = "git commits: " + ", ".join(gits)
        packages.append(pkg)
        relationships.append({"spdxElementId": root_id, "relationshipType": "CONTAINS",
                              "relatedSpdxElement": pid})
        for dep in part.meta.get("runtime_deps") or []:
            if dep in ids:
                dn, dv, dh = dep.split("/")
                relationships.append({"spdxElementId": pid, "relationshipType": "DEPENDS_ON",
                                      "relatedSpdxElement": _spdx_id(f"{dn}-{dv}-{dh}")})
    files = []
    owner: dict[str, str] = {}
    for hp in host:
        hid = _spdx_id(f"host-{hp.manager}-{hp.name}")
        packages.append({
            "SPDXID": hid, "name": hp.name, "versionInfo": hp.version,
            "downloadLocation": "NOASSERTION", "filesAnalyzed": False,
            "supplier": "Organization: host operating system",
            "comment": f"host {hp.manager} package ({hp.arch}); its files are copied in",
            "externalRefs": [{"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl",
                              "referenceLocator": hp.purl}]})
        relationships.append({"spdxElementId": root_id, "relationshipType": "DEPENDS_ON",
                              "relatedSpdxElement": hid})
        for f in hp.files:
            owner[f] = hid
    for path in sorted(system.files):
        fid = _spdx_id("file" + path)
        files.append({"SPDXID": fid, "fileName": "." + path,
                      "checksums": [{"algorithm": "SHA256", "checksumValue": sha256_file(path)},
                                    {"algorithm": "SHA1", "checksumValue": _sha1(path)}],
                      "comment": "copied from the host system"})
        relationships.append({"spdxElementId": root_id, "relationshipType": "DEPENDS_ON",
                              "relatedSpdxElement": fid})
        if path in owner:
            relationships.append({"spdxElementId": fid, "relationshipType": "GENERATED_FROM",
                                  "relatedSpdxElement": owner[path]})
    serial = uuid.uuid5(NAMESPACE, closure.hash + reader.image_path(closure.path))
    return {
        "spdxVersion": "SPDX-2.3", "dataLicense": "CC0-1.0", "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"hdenv profile {closure.hash}",
        "documentNamespace": f"https://hdenv.invalid/spdx/{closure.hash}-{serial}",
        "creationInfo": {"created": created(), "creators": [f"Tool: hdenv-{__version__}"]},
        "packages": packages, "files": files, "relationships": relationships,
    }


def _sha1(path: str) -> str:
    h = hashlib.sha1()  # SPDX 2.3 requires a SHA1 for every file
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _cyclonedx(store: Store, closure: Closure, system: SystemFiles, reader: TreeReader,
               host: list[HostPackage]) -> dict[str, Any]:
    components: list[dict[str, Any]] = []
    deps: list[dict[str, Any]] = []
    ids = {p.ident for p in closure.parts}
    for part in closure.parts:
        name, version, _ = part.ident.split("/")
        sources = _sources(store, part.ident)
        comp: dict[str, Any] = {
            "type": "application" if part.kind == "host" else "library",
            "bom-ref": part.ident, "name": name, "version": version,
            "description": f"hdenv artifact {part.ident} at {reader.image_path(part.path)}",
            "properties": [{"name": "hdenv:artifact", "value": part.ident},
                           {"name": "hdenv:kind", "value": part.kind}],
        }
        hashes = [{"alg": "SHA-256", "content": s["key"][7:]}
                  for s in sources if s["key"].startswith("sha256:")]
        if hashes:
            comp["hashes"] = hashes
        refs = [{"type": "distribution", "url": u} for s in sources for u in s["urls"]]
        refs += [{"type": "vcs", "url": str(s["git"])} for s in sources if s.get("git")]
        if refs:
            comp["externalReferences"] = refs
        comp["properties"] += [{"name": "hdenv:source", "value": s["key"]} for s in sources]
        components.append(comp)
        deps.append({"ref": part.ident,
                     "dependsOn": [d for d in part.meta.get("runtime_deps") or [] if d in ids]})
    for path in sorted(system.files):
        components.append({"type": "file", "bom-ref": f"host:{path}", "name": path,
                           "hashes": [{"alg": "SHA-256", "content": sha256_file(path)}],
                           "properties": [{"name": "hdenv:host-file", "value": "true"}]})
    for hp in host:
        components.append({"type": "library", "bom-ref": hp.purl, "name": hp.name,
                           "version": hp.version, "purl": hp.purl,
                           "description": f"host {hp.manager} package; its files are copied in",
                           "properties": [{"name": "hdenv:host-file", "value": f}
                                          for f in hp.files]})
    root_ref = f"profile:{closure.hash}"
    deps.insert(0, {"ref": root_ref, "dependsOn": [p.ident for p in closure.parts]
                    + [hp.purl for hp in host]})
    return {
        "bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1,
        "serialNumber": f"urn:uuid:{uuid.uuid5(NAMESPACE, 'cdx' + closure.hash)}",
        "metadata": {"timestamp": created(),
                     "tools": {"components": [{"type": "application", "name": "hdenv",
                                               "version": __version__}]},
                     "component": {"type": "container", "bom-ref": root_ref,
                                   "name": f"hdenv-profile-{closure.hash}",
                                   "version": closure.hash}},
        "components": components, "dependencies": deps,
    }
