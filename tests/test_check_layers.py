"""scripts/check-layers, the layout's import rules, on small made-up trees: it must catch what
it claims to, or `scripts/test` passing would say nothing about the layout."""

import subprocess
import sys
from pathlib import Path

import pytest

CHECKER = Path(__file__).resolve().parent.parent / "scripts" / "check-layers"


def check(tmp_path, files: dict[str, str]) -> tuple[int, str]:
    base = {"lib.rs": "pub mod error; pub mod policy; pub mod wechat; mod edge;",
            "error.rs": "", "policy/mod.rs": "pub mod a; pub mod b;", "policy/a.rs": "",
            "policy/b.rs": "", "wechat/mod.rs": "", "edge/mod.rs": ""}
    for name, text in (base | files).items():
        path = tmp_path / "src" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    done = subprocess.run([sys.executable, str(CHECKER), str(tmp_path / "src")],
                          capture_output=True, text=True)
    return done.returncode, done.stdout


def test_a_clean_tree_passes(tmp_path):
    code, out = check(tmp_path, {"policy/a.rs": "use crate::error::AppError;",
                                 "edge/mod.rs": "use crate::policy::{a::X, b::{Y, Z}};"})
    assert code == 0, out


def test_rooms_used_downwards_and_the_shared_gate_pass(tmp_path):
    code, out = check(tmp_path, {
        "edge/router.rs": "use crate::edge::routes::{gateway, admin};",
        "edge/routes/gateway.rs": "use crate::edge::{routes::access, objects::store, adapters::kv};",
        "edge/routes/admin.rs": "use crate::edge::routes::access::check;",
        "edge/routes/access.rs": "use crate::edge::objects::store::X;",
        "edge/objects/store.rs": "use crate::edge::adapters::kv::Y;",
        "edge/adapters/kv.rs": "use crate::policy::a::Z;",
    })
    assert code == 0, out


@pytest.mark.parametrize("files, expected", [
    ({"policy/a.rs": "use crate::policy::b::X;", "policy/b.rs": "use super::a::Y;"},
     "module cycle: policy::a <-> policy::b"),
    ({"policy/a.rs": "use crate::{policy::{b::X, c}};", "policy/b.rs": "use self::super::a::Y;"},
     "module cycle"),
    ({"policy/a.rs": "fn f() { crate::policy::b::g() }", "policy/b.rs": "use crate::policy::a;"},
     "module cycle"),
    ({"policy/a.rs": "use crate::edge::Thing;"}, "against the layers' direction"),
    ({"error.rs": "use crate::policy::a::X;"}, "against the layers' direction"),
    ({"policy/a.rs": 'const U: &str = "https://x"; fn f() { worker::Date::now(); }'},
     "a pure layer uses a runtime crate"),
    ({"wechat/mod.rs": "use js_sys::Date;"}, "a pure layer uses a runtime crate"),
    ({"clock.rs": ""}, "in no layer"),
    ({"edge/objects/store.rs": "use crate::edge::routes::gateway::X;",
      "edge/routes/gateway.rs": ""}, "against the rooms' direction"),
    ({"edge/adapters/kv.rs": "use crate::edge::objects::store::X;",
      "edge/objects/store.rs": ""}, "against the rooms' direction"),
    ({"edge/routes/platform.rs": "use crate::edge::routes::admin::remove;",
      "edge/routes/admin.rs": ""}, "one route module uses another"),
    ({"edge/helpers.rs": ""}, "in no room of edge"),
])
def test_what_it_refuses(tmp_path, files, expected):
    code, out = check(tmp_path, files)
    assert code == 1 and expected in out, out
