"""Generates the API reference of each service from its protos: one README.md per
package directory (proto/retention/<ctx>/v1/README.md) with the methods, messages,
enums and events and the comments written in the .proto files.

Input: the JSON FileDescriptorSet of `buf build -o <file>.json` (it keeps the source
comments). Usage: python3 scripts/gen_api_docs.py <image.json> <out-root>
`make docs` writes into the repository; `make docs-check` (part of `make test`)
fails when the committed reference no longer matches the protos.
"""

import json
import pathlib
import sys

SCALARS = {
    "TYPE_DOUBLE": "double", "TYPE_FLOAT": "float", "TYPE_INT64": "int64",
    "TYPE_UINT64": "uint64", "TYPE_INT32": "int32", "TYPE_BOOL": "bool",
    "TYPE_STRING": "string", "TYPE_BYTES": "bytes", "TYPE_UINT32": "uint32",
    "TYPE_SINT32": "sint32", "TYPE_SINT64": "sint64", "TYPE_FIXED64": "fixed64",
    "TYPE_FIXED32": "fixed32",
}


def comments(f):
    """Path (as a tuple) -> leading comment, one line."""
    out = {}
    for loc in f.get("sourceCodeInfo", {}).get("location", []):
        text = (loc.get("leadingComments") or loc.get("trailingComments") or "").strip()
        if text:
            out[tuple(loc["path"])] = " ".join(l.strip() for l in text.splitlines())
    return out


def short(type_name, package):
    name = type_name.lstrip(".")
    if name.startswith(package + "."):
        return name[len(package) + 1:]
    return name


def field_type(fd, package, maps):
    if fd.get("typeName"):
        t = short(fd["typeName"], package)
        if t in maps:
            k, v = maps[t]
            return f"map<{k}, {v}>"
    else:
        t = SCALARS.get(fd["type"], fd["type"])
    if fd.get("label") == "LABEL_REPEATED":
        return f"repeated {t}"
    if fd.get("proto3Optional"):
        return f"optional {t}"
    return t


def cell(text):
    return text.replace("|", "\\|")


def render_message(m, path, c, package, out, prefix=""):
    name = prefix + m["name"]
    maps = {}
    for n in m.get("nestedType", []):
        if n.get("options", {}).get("mapEntry"):
            k, v = n["field"]
            maps[f"{name}.{n['name']}"] = (
                field_type(k, package, {}), field_type(v, package, {}))
    out.append(f"### {name}\n")
    if c.get(path):
        out.append(c[path] + "\n")
    fields = m.get("field", [])
    if fields:
        out.append("| field | type | description |")
        out.append("|---|---|---|")
        for j, fd in enumerate(fields):
            desc = c.get(path + (2, j), "")
            out.append(f"| `{fd['name']}` | `{field_type(fd, package, maps)}` | {cell(desc)} |")
    out.append("")
    for k, n in enumerate(m.get("nestedType", [])):
        if not n.get("options", {}).get("mapEntry"):
            render_message(n, path + (3, k), c, package, out, name + ".")


def render_enum(e, path, c, out):
    out.append(f"### {e['name']}\n")
    if c.get(path):
        out.append(c[path] + "\n")
    out.append("| value | number | description |")
    out.append("|---|---|---|")
    for j, v in enumerate(e.get("value", [])):
        out.append(f"| `{v['name']}` | {v.get('number', 0)} | {cell(c.get(path + (2, j), ''))} |")
    out.append("")


def render(files, package):
    out = [f"# `{package}` API reference\n",
           "Generated from the protos by `make docs` (scripts/gen_api_docs.py); "
           "edit the `.proto` comments, not this file.\n"]
    for f in files:
        c = comments(f)
        out.append(f"## `{f['name']}`\n")
        for i, s in enumerate(f.get("service", [])):
            out.append(f"### service {s['name']}\n")
            if c.get((6, i)):
                out.append(c[(6, i)] + "\n")
            out.append("| method | request | response | description |")
            out.append("|---|---|---|---|")
            for j, m in enumerate(s.get("method", [])):
                req = short(m["inputType"], package)
                resp = short(m["outputType"], package)
                if m.get("clientStreaming"):
                    req = "stream " + req
                if m.get("serverStreaming"):
                    resp = "stream " + resp
                out.append(f"| `{m['name']}` | `{req}` | `{resp}` | {cell(c.get((6, i, 2, j), ''))} |")
            out.append("")
        for i, m in enumerate(f.get("messageType", [])):
            render_message(m, (4, i), c, package, out)
        for i, e in enumerate(f.get("enumType", [])):
            render_enum(e, (5, i), c, out)
    return "\n".join(out).rstrip() + "\n"


def main():
    image, root = sys.argv[1], pathlib.Path(sys.argv[2])
    files = json.loads(pathlib.Path(image).read_text())["file"]
    by_package = {}
    for f in files:
        if f["name"].startswith("retention/"):
            by_package.setdefault(f.get("package", ""), []).append(f)
    for package, fs in sorted(by_package.items()):
        directory = root / pathlib.Path(fs[0]["name"]).parent
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "README.md").write_text(render(sorted(fs, key=lambda f: f["name"].endswith("events.proto")), package))
        print(f"{directory}/README.md")


if __name__ == "__main__":
    main()
