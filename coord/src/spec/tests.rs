//! Every class of bad spec, asserted word for word.

use super::*;

const WINDOW: &str = r#"final = "window"

[types.wood]
yield = 3

[types.frame]
inputs = { wood = 3 }
yield = 5

[types.window]
inputs = { frame = 2 }
yield = 1

[[stages]]
id = 1
type = "wood"

[[stages]]
id = 2
type = "frame"
capacity = 2

[[stages]]
id = 3
type = "window"
addr = "127.0.0.1:7103"
"#;

fn errors(text: &str) -> String {
    parse("chain.toml", text).unwrap_err().to_string()
}

#[test]
fn a_good_spec_parses() {
    let chain = parse("chain.toml", WINDOW).unwrap();
    assert_eq!(chain.spec.final_type.as_str(), "window");
    let names: Vec<_> = chain.spec.types.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["wood", "frame", "window"], "file order is kept");
    let frame = chain.spec.recipe(&"frame".into()).unwrap();
    assert_eq!(frame.inputs[&ItemType::from("wood")], 3);
    assert_eq!(frame.yield_units, 5);
    assert_eq!(chain.stages.len(), 3);
    assert_eq!(chain.stages[1].capacity, 2);
    assert_eq!(
        chain.stages[2].addr,
        Some("127.0.0.1:7103".parse().unwrap())
    );
    assert_eq!(chain.raw_types(), [&ItemType::from("wood")]);
}

#[test]
fn a_cycle_is_named() {
    let text = WINDOW.replace(
        "[types.wood]\nyield = 3",
        "[types.wood]\ninputs = { window = 1 }\nyield = 3",
    );
    assert_eq!(
        errors(&text),
        "chain.toml:3:8: error: cycle in the chain: wood -> frame -> window -> wood\n  \
         hint: a type cannot be an input of itself, even indirectly: remove one of these inputs"
    );
}

#[test]
fn a_self_loop_is_a_cycle() {
    let text = WINDOW.replace(
        "inputs = { frame = 2 }",
        "inputs = { frame = 2, window = 1 }",
    );
    assert_eq!(
        errors(&text),
        "chain.toml:10:8: error: cycle in the chain: window -> window\n  \
         hint: a type cannot be an input of itself, even indirectly: remove one of these inputs"
    );
}

#[test]
fn an_input_nobody_produces() {
    let text = WINDOW.replace("inputs = { wood = 3 }", "inputs = { wod = 3 }");
    assert_eq!(
        errors(&text),
        "chain.toml:7:12: error: type `frame` needs input `wod`, which no type produces\n  \
         hint: define [types.wod] or use one of: frame, window, wood"
    );
}

#[test]
fn a_missing_final_type() {
    let text = WINDOW.replace("final = \"window\"\n", "");
    assert_eq!(
        errors(&text),
        "chain.toml:1:1: error: the spec names no final type\n  \
         hint: add `final = \"NAME\"` naming the finished product, at the top of the file"
    );
}

#[test]
fn an_unknown_final_type() {
    let text = WINDOW.replace("final = \"window\"", "final = \"door\"");
    assert_eq!(
        errors(&text),
        "chain.toml:1:9: error: final type `door` is not a type of this chain\n  \
         hint: use one of: frame, window, wood"
    );
}

#[test]
fn zero_and_negative_quantities() {
    let text = WINDOW
        .replace("yield = 5", "yield = 0")
        .replace("inputs = { frame = 2 }", "inputs = { frame = -2 }")
        .replace("capacity = 2", "capacity = 0");
    assert_eq!(
        errors(&text),
        "chain.toml:8:9: error: type `frame`: yield must be a positive number of units, got 0\n  \
         hint: use a whole number of at least 1\n\
         chain.toml:11:20: error: type `window`: input `frame` must be a positive number of units, got -2\n  \
         hint: use a whole number of at least 1\n\
         chain.toml:21:12: error: stage 2: capacity must be a positive number of units, got 0\n  \
         hint: use a whole number of at least 1"
    );
}

#[test]
fn duplicate_stage_ids() {
    let text = WINDOW.replace("id = 3", "id = 1");
    assert_eq!(
        errors(&text),
        "chain.toml:24:6: error: stage id 1 is used twice (first on line 15)\n  \
         hint: give every stage its own id"
    );
}

#[test]
fn duplicate_type_names_are_a_toml_error() {
    let text = format!("{WINDOW}\n[types.wood]\nyield = 1\n");
    let out = errors(&text);
    assert_eq!(
        out,
        "chain.toml:28:8: error: duplicate key\n  \
         hint: every type, table and key may appear only once: merge or rename the duplicate"
    );
}

#[test]
fn unknown_keys() {
    let text = WINDOW.replace("yield = 3", "yeld = 3");
    assert_eq!(
        errors(&text),
        "chain.toml:4:1: error: unknown field `yeld`, expected `inputs` or `yield`\n  \
         hint: remove the key or correct its spelling"
    );
    let text = WINDOW.replace("capacity = 2", "capacty = 2");
    assert_eq!(
        errors(&text),
        "chain.toml:21:1: error: unknown field `capacty`, expected one of `id`, `type`, `addr`, `capacity`\n  \
         hint: remove the key or correct its spelling"
    );
}

#[test]
fn stages_of_unknown_types_and_types_without_stages() {
    let text = WINDOW.replace("type = \"frame\"", "type = \"frme\"");
    assert_eq!(
        errors(&text),
        "chain.toml:6:8: error: no stage makes `frame`\n  \
         hint: add a [[stages]] entry with type = \"frame\"\n\
         chain.toml:20:8: error: stage 2 makes `frme`, which is not a type of this chain\n  \
         hint: use one of: frame, window, wood"
    );
}

#[test]
fn a_bad_address() {
    let text = WINDOW.replace("127.0.0.1:7103", "localhost");
    assert_eq!(
        errors(&text),
        "chain.toml:26:8: error: stage 3: `localhost` is not a socket address\n  \
         hint: write it as IP:PORT, e.g. 127.0.0.1:7101"
    );
}

#[test]
fn several_problems_are_all_reported_in_file_order() {
    let text = WINDOW
        .replace("final = \"window\"", "final = \"door\"")
        .replace("id = 3", "id = 1");
    let out = errors(&text);
    assert_eq!(out.matches(": error: ").count(), 2, "{out}");
    assert!(out.find("final type").unwrap() < out.find("used twice").unwrap());
}

#[test]
fn the_shipped_examples_are_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            load(&path).unwrap_or_else(|e| panic!("{e}"));
            n += 1;
        }
    }
    assert!(n >= 2, "expected at least two examples, found {n}");
}
