//! The JSON Schemas of the contract (`schemas/`): each is a valid draft 2020-12 schema, the
//! generated `input/event.json` matches the per-type files, the input schemas agree with the
//! crate's parser on a table of valid and invalid events, and the output schemas accept and
//! reject hand-built outputs.
//!
//! Helpers for other tests: [`input_validator`], [`output_validator`], [`score_changed_invariants`].
//!
//! `input/event.json` is generated from the per-type files. After editing one of those, run
//! `HEALTHSCORE_BLESS_SCHEMAS=1 cargo test --test schemas` to rewrite it.

use std::collections::BTreeMap;
use std::path::PathBuf;

mod common;

use common::*;
use healthscore::event::{parse, source_of_type};
use jsonschema::Validator;
use serde_json::{json, Map, Value};

const DRAFT_2020_12: &str = "https://json-schema.org/draft/2020-12/schema";

/// Every input event type of the contract, in the order of `event.json`'s `oneOf`.
const TYPES: [&str; 14] = [
    "feature_used",
    "session",
    "ticket_opened",
    "ticket_resolved",
    "ticket_reopened",
    "csat_response",
    "nps_response",
    "subscription_started",
    "subscription_changed",
    "subscription_renewed",
    "subscription_cancelled",
    "invoice_paid",
    "payment_failed",
    "invoice_overdue",
];

const OUTPUTS: [&str; 2] = ["score_changed", "alert"];

// ---------------------------------------------------------------------------------------------
// Loading schemas (reusable)
// ---------------------------------------------------------------------------------------------

fn schema_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("schemas").join(rel)
}

/// Reads `schemas/<rel>` as JSON.
pub fn load_schema(rel: &str) -> Value {
    let path = schema_path(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// Compiles a schema as draft 2020-12 with `format` asserted (date-time, date), unknown formats
/// treated as errors. Compiling also checks the schema against the draft 2020-12 meta-schema.
pub fn compile(schema: &Value) -> Validator {
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .should_ignore_unknown_formats(false)
        .build(schema)
        .unwrap_or_else(|e| panic!("schema {} does not compile: {e}", schema["$id"]))
}

/// The validator of one input event type (`"feature_used"`, ...) or of any event (`"event"`).
pub fn input_validator(kind: &str) -> Validator {
    compile(&load_schema(&format!("input/{kind}.json")))
}

/// The validator of one output kind: `"score_changed"` or `"alert"`.
pub fn output_validator(kind: &str) -> Validator {
    assert!(OUTPUTS.contains(&kind), "no output schema for {kind:?}");
    compile(&load_schema(&format!("output/{kind}.json")))
}

/// All validation errors of `instance`, one line each (empty when valid).
pub fn errors(validator: &Validator, instance: &Value) -> Vec<String> {
    validator.iter_errors(instance).map(|e| format!("{}: {e}", e.instance_path)).collect()
}

/// Tolerance for [`score_changed_invariants`]; loosen it if the engine rounds the score.
pub const SUM_TOLERANCE: f64 = 1e-6;
/// The engine rounds points to 0.1, weights to 1e-4, contributions to 0.01 and the score to
/// 0.1: sums of rounded parts differ from the rounded whole by at most this much.
pub const ENGINE_ROUNDING: f64 = 0.25;

/// What the `score_changed` schema cannot express: each contribution is points × weight (0 for a
/// skipped component), the contributions sum to the score, and `top_drivers` name components.
pub fn score_changed_invariants(output: &Value) -> Vec<String> {
    score_changed_invariants_within(output, SUM_TOLERANCE)
}

pub fn score_changed_invariants_within(output: &Value, tolerance: f64) -> Vec<String> {
    let mut problems = Vec::new();
    let components = output["components"].as_array().cloned().unwrap_or_default();
    let score = output["score"].as_f64().unwrap_or(f64::NAN);
    let weighted: f64 = components
        .iter()
        .map(|c| c["points"].as_f64().map_or(0.0, |p| p * c["weight"].as_f64().unwrap_or(f64::NAN)))
        .sum();
    // When a cap held the score down, contributions are points × weight scaled by one factor.
    let capped = output["caps"].as_array().is_some_and(|c| !c.is_empty());
    let factor = if capped && weighted > 0.0 { score / weighted } else { 1.0 };
    if capped && factor > 1.0 + tolerance / 100.0 {
        problems.push(format!("caps raised the score: {weighted} → {score}"));
    }
    let mut sum = 0.0;
    for c in &components {
        let contribution = c["contribution"].as_f64().unwrap_or(f64::NAN);
        let expected = c["points"].as_f64().map_or(0.0, |p| p * c["weight"].as_f64().unwrap_or(f64::NAN)) * factor;
        if (contribution - expected).abs() > tolerance {
            problems
                .push(format!("component {}: contribution {contribution} != points × weight {expected}", c["name"]));
        }
        sum += contribution;
    }
    if (sum - score).abs() > tolerance {
        problems.push(format!("contributions sum to {sum}, score is {score}"));
    }
    for driver in output["top_drivers"].as_array().into_iter().flatten() {
        if !components.iter().any(|c| c["name"] == *driver) {
            problems.push(format!("top driver {driver} is not a component"));
        }
    }
    problems
}

// ---------------------------------------------------------------------------------------------
// The schemas themselves
// ---------------------------------------------------------------------------------------------

/// Keywords the schemas may use. Anything else is almost certainly a typo (`minimun`), which the
/// meta-schema would silently accept as an unknown keyword.
const KNOWN_KEYWORDS: &[&str] = &[
    "$schema",
    "$id",
    "$ref",
    "$defs",
    "title",
    "description",
    "examples",
    "default",
    "type",
    "const",
    "enum",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "maxItems",
    "uniqueItems",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "anyOf",
    "oneOf",
];

fn check_keywords(schema: &Value, at: &str, problems: &mut Vec<String>) {
    let Value::Object(map) = schema else {
        if !schema.is_boolean() {
            problems.push(format!("{at}: a schema must be an object or a boolean"));
        }
        return;
    };
    for (key, value) in map {
        if !KNOWN_KEYWORDS.contains(&key.as_str()) {
            problems.push(format!("{at}: unknown keyword {key:?}"));
        }
        match key.as_str() {
            "properties" | "$defs" => {
                for (name, sub) in value.as_object().into_iter().flatten() {
                    check_keywords(sub, &format!("{at}/{key}/{name}"), problems);
                }
            }
            "anyOf" | "oneOf" => {
                for (i, sub) in value.as_array().into_iter().flatten().enumerate() {
                    check_keywords(sub, &format!("{at}/{key}/{i}"), problems);
                }
            }
            "items" | "additionalProperties" => check_keywords(value, &format!("{at}/{key}"), problems),
            _ => {}
        }
    }
}

/// Every object schema under `schema` (including itself) that declares `properties`.
fn object_schemas<'a>(schema: &'a Value, at: String, out: &mut Vec<(String, &'a Value)>) {
    let Value::Object(map) = schema else { return };
    if map.contains_key("properties") {
        out.push((at.clone(), schema));
    }
    for (key, value) in map {
        match key.as_str() {
            "properties" | "$defs" => {
                for (name, sub) in value.as_object().into_iter().flatten() {
                    object_schemas(sub, format!("{at}/{key}/{name}"), out);
                }
            }
            "anyOf" | "oneOf" => {
                for (i, sub) in value.as_array().into_iter().flatten().enumerate() {
                    object_schemas(sub, format!("{at}/{key}/{i}"), out);
                }
            }
            "items" | "additionalProperties" => object_schemas(value, format!("{at}/{key}"), out),
            _ => {}
        }
    }
}

fn all_schema_files() -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["input", "output"] {
        for entry in std::fs::read_dir(schema_path(dir)).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            files.push(format!("{dir}/{name}"));
        }
    }
    files.sort();
    files
}

#[test]
fn the_schema_files_are_exactly_the_contract() {
    let mut expected: Vec<String> = TYPES.iter().map(|t| format!("input/{t}.json")).collect();
    expected.push("input/event.json".into());
    expected.extend(OUTPUTS.iter().map(|o| format!("output/{o}.json")));
    expected.sort();
    assert_eq!(all_schema_files(), expected);
    for kind in TYPES {
        assert!(source_of_type(kind).is_some(), "the parser does not know the type {kind}");
    }
}

#[test]
fn every_schema_is_a_valid_draft_2020_12_schema() {
    // The meta-schemas ship inside the crate, so this resolves offline.
    let meta = compile(&json!({ "$ref": DRAFT_2020_12 }));
    assert!(!meta.is_valid(&json!({ "type": "nonsense", "minLength": -1 })), "the meta-schema check must bite");
    let mut problems = Vec::new();
    for file in all_schema_files() {
        let schema = load_schema(&file);
        for e in errors(&meta, &schema) {
            problems.push(format!("{file}: not a draft 2020-12 schema: {e}"));
        }
        if schema["$schema"] != DRAFT_2020_12 {
            problems.push(format!("{file}: $schema must be {DRAFT_2020_12}"));
        }
        let id = schema["$id"].as_str().unwrap_or_default();
        if !id.starts_with("https://") || !id.ends_with(&format!("/{file}")) {
            problems.push(format!("{file}: $id {id:?} should be an https URL ending in /{file}"));
        }
        for key in ["title", "description"] {
            if schema[key].as_str().is_none_or(str::is_empty) {
                problems.push(format!("{file}: missing {key}"));
            }
        }
        if schema["type"] != "object" {
            problems.push(format!("{file}: type must be object"));
        }
        check_keywords(&schema, &file, &mut problems);
        // No cross-file references: every $ref points into the file's own $defs.
        let text = schema.to_string();
        for piece in text.split("\"$ref\":\"").skip(1) {
            if !piece.starts_with("#/$defs/") {
                problems.push(format!("{file}: $ref to {:?} leaves the file", piece.split('"').next()));
            }
        }
        // Compiling runs the meta-schema check too, and builds every regex.
        let _ = compile(&schema);
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn input_schemas_are_open_and_name_their_topic() {
    for kind in TYPES {
        let schema = load_schema(&format!("input/{kind}.json"));
        assert_eq!(schema["additionalProperties"], true, "{kind}: unknown fields must be allowed");
        assert_eq!(schema["properties"]["type"]["const"], kind, "{kind}: type const");
        let required: Vec<&str> = schema["required"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        for common in ["event_id", "customer_id", "timestamp", "type"] {
            assert!(required.contains(&common), "{kind}: {common} must be required");
        }
        for field in &required {
            assert!(schema["properties"].get(field).is_some(), "{kind}: required {field} has no property schema");
        }
        let topic = source_of_type(kind).unwrap().as_str();
        let description = schema["description"].as_str().unwrap();
        assert!(description.contains(&format!("`{topic}`")), "{kind}: description must name topic {topic}");
    }
}

#[test]
fn output_schemas_are_closed() {
    for kind in OUTPUTS {
        let schema = load_schema(&format!("output/{kind}.json"));
        let mut objects = Vec::new();
        object_schemas(&schema, kind.to_string(), &mut objects);
        assert!(!objects.is_empty());
        for (at, object) in objects {
            assert_eq!(object["additionalProperties"], false, "{at}: outputs must not allow unknown fields");
            let required = object["required"].as_array().unwrap();
            assert_eq!(
                required.len(),
                object["properties"].as_object().unwrap().len(),
                "{at}: every field is required"
            );
        }
        assert_eq!(schema["properties"]["type"]["const"], kind);
    }
}

/// `event.json` as it must be: the per-type files verbatim in `$defs`, a `oneOf` over all of
/// them, and the list of types. Everything else (title, description...) is taken from the file.
fn expected_event_schema(current: &Value) -> Value {
    let mut expected = current.clone();
    let defs: Map<String, Value> =
        TYPES.iter().map(|t| (t.to_string(), load_schema(&format!("input/{t}.json")))).collect();
    expected["$defs"] = Value::Object(defs);
    expected["oneOf"] = TYPES.iter().map(|t| json!({ "$ref": format!("#/$defs/{t}") })).collect();
    expected["required"] = json!(["type"]);
    expected["properties"] = json!({ "type": { "enum": TYPES } });
    expected["type"] = json!("object");
    expected
}

#[test]
fn event_schema_is_generated_from_the_type_schemas() {
    let current = load_schema("input/event.json");
    let expected = expected_event_schema(&current);
    if std::env::var_os("HEALTHSCORE_BLESS_SCHEMAS").is_some() {
        let text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
        std::fs::write(schema_path("input/event.json"), text).unwrap();
        return;
    }
    for kind in TYPES {
        assert_eq!(
            current["$defs"][kind], expected["$defs"][kind],
            "event.json's $defs/{kind} differs from input/{kind}.json; \
             run HEALTHSCORE_BLESS_SCHEMAS=1 cargo test --test schemas"
        );
    }
    assert_eq!(current, expected, "event.json is stale; run HEALTHSCORE_BLESS_SCHEMAS=1 cargo test --test schemas");
}

// ---------------------------------------------------------------------------------------------
// Input agreement: schema vs parser
// ---------------------------------------------------------------------------------------------

/// The required fields of each type beyond the common four, with a valid value each.
fn required_fields(kind: &str) -> Vec<(&'static str, Value)> {
    match kind {
        "feature_used" => vec![("feature", json!("reports"))],
        "session" => vec![("duration_seconds", json!(312.5))],
        "ticket_opened" => vec![("ticket_id", json!("T-1")), ("priority", json!("high"))],
        "ticket_resolved" | "ticket_reopened" => vec![("ticket_id", json!("T-1"))],
        "csat_response" => vec![("rating", json!(4))],
        "nps_response" => vec![("score", json!(9))],
        "subscription_started" | "subscription_changed" => vec![("plan", json!("pro")), ("mrr", json!(499.0))],
        "subscription_renewed" => vec![("renewal_date", json!("2027-11-01"))],
        "subscription_cancelled" => vec![],
        "invoice_paid" | "payment_failed" | "invoice_overdue" => {
            vec![("invoice_id", json!("INV-7")), ("amount", json!(1250.75))]
        }
        other => panic!("no fields for {other}"),
    }
}

/// The optional fields of each type, with a valid value each.
fn optional_fields(kind: &str) -> Vec<(&'static str, Value)> {
    match kind {
        "feature_used" => vec![("user_id", json!("u-1")), ("quantity", json!(3))],
        "session" => vec![("user_id", json!("u-1"))],
        "csat_response" => vec![("ticket_id", json!("T-1"))],
        "subscription_started" => vec![("seats", json!(25)), ("renewal_date", json!("2027-11-01T00:00:00+01:00"))],
        "subscription_changed" => vec![("seats", json!(30))],
        "subscription_cancelled" => vec![("reason", json!("too expensive")), ("effective_date", json!("2027-01-31"))],
        "invoice_paid" | "payment_failed" | "invoice_overdue" => vec![("days_overdue", json!(12))],
        _ => vec![],
    }
}

/// A minimal valid event of `kind`: the common fields plus the required ones.
fn event(kind: &str) -> Value {
    let mut v = json!({
        "event_id": format!("evt-{kind}"),
        "customer_id": "cus-42",
        "timestamp": "2026-11-25T13:53:06Z",
        "type": kind,
    });
    for (field, value) in required_fields(kind) {
        v[field] = value;
    }
    v
}

/// A valid event of `kind` with every optional field set.
fn full(kind: &str) -> Value {
    let mut v = event(kind);
    for (field, value) in optional_fields(kind) {
        v[field] = value;
    }
    v
}

/// `v` with `field` set to `value`.
fn with(mut v: Value, field: &str, value: Value) -> Value {
    v[field] = value;
    v
}

/// `v` without `field`.
fn without(mut v: Value, field: &str) -> Value {
    v.as_object_mut().unwrap().remove(field);
    v
}

struct Case {
    /// The schema to check besides `event.json`; `None` when the type is not in the contract.
    kind: Option<&'static str>,
    what: String,
    event: Value,
    valid: bool,
}

fn ok(kind: &'static str, what: impl Into<String>, event: Value) -> Case {
    Case { kind: Some(kind), what: what.into(), event, valid: true }
}

fn bad(kind: &'static str, what: impl Into<String>, event: Value) -> Case {
    Case { kind: Some(kind), what: what.into(), event, valid: false }
}

/// Invalid for any schema: not an event of a known type, checked against `event.json` only.
fn bad_any(what: impl Into<String>, event: Value) -> Case {
    Case { kind: None, what: what.into(), event, valid: false }
}

// Left out on purpose, because a JSON Schema and the parser cannot agree on them by design:
// - Numbers beyond f64 (`"quantity": 1e400`), lone surrogates (`"\ud800"`), invalid UTF-8,
//   non-JSON bytes: serde_json refuses them (`not_json`), so there is no instance to validate.
// - Duplicate keys (`{"score":3,"score":30}`): a `serde_json::Value` keeps the last one, the
//   parser rejects a duplicated known field. JSON leaves duplicates undefined anyway.
// - Offsets that move the instant across the 2000/2100 boundary
//   (`2000-01-01T00:30:00+01:00` is 1999 UTC; `1999-12-31T23:30:00-01:00` is 2000 UTC): the
//   pattern can only check the written year, the parser checks the UTC instant.
// - Leap seconds (`23:59:60Z`): the `date-time` format accepts them on any day, the parser only
//   on the last day of a month (when they can happen).
// - Topic checks (`wrong_topic`) and lateness (`too_late`) are not properties of the document.
// Disagreements that are parser bugs are in `known_parser_disagreements` below.
fn agreement_cases() -> Vec<Case> {
    let mut cases = Vec::new();

    // Every type: minimal, with every optional field, with optional fields null, with extra fields.
    for kind in TYPES {
        cases.push(ok(kind, "minimal", event(kind)));
        cases.push(ok(kind, "all optional fields", full(kind)));
        let mut nulls = event(kind);
        for (field, _) in optional_fields(kind) {
            nulls[field] = Value::Null;
        }
        cases.push(ok(kind, "optional fields null", nulls));
        let extra = with(full(kind), "x_source", json!({ "nested": [1, "two", null] }));
        cases.push(ok(kind, "unknown extra field", with(extra, "schema_version", json!(3))));
        // Each required field missing, and null (which the parser treats as missing).
        let common = ["event_id", "customer_id", "timestamp", "type"];
        for field in common.into_iter().chain(required_fields(kind).into_iter().map(|(f, _)| f)) {
            let missing = without(full(kind), field);
            let null = with(full(kind), field, Value::Null);
            if field == "type" {
                cases.push(bad_any(format!("{kind}: type missing"), missing));
                cases.push(bad_any(format!("{kind}: type null"), null));
            } else {
                cases.push(bad(kind, format!("{field} missing"), missing));
                cases.push(bad(kind, format!("{field} null"), null));
            }
        }
    }

    // Common fields: ids.
    let e = || event("nps_response");
    let k = "nps_response";
    cases.push(ok(k, "event_id of 1 char", with(e(), "event_id", json!("e"))));
    cases.push(ok(k, "event_id of 128 chars", with(e(), "event_id", json!("x".repeat(128)))));
    cases.push(ok(k, "event_id of 128 two-byte chars", with(e(), "event_id", json!("é".repeat(128)))));
    cases.push(ok(k, "customer_id of 128 four-byte chars", with(e(), "customer_id", json!("🦀".repeat(128)))));
    cases.push(bad(k, "event_id of 0 chars", with(e(), "event_id", json!(""))));
    cases.push(bad(k, "event_id of 129 chars", with(e(), "event_id", json!("x".repeat(129)))));
    cases.push(bad(k, "event_id of 129 two-byte chars", with(e(), "event_id", json!("é".repeat(129)))));
    cases.push(bad(k, "customer_id of 0 chars", with(e(), "customer_id", json!(""))));
    cases.push(bad(k, "customer_id of 129 chars", with(e(), "customer_id", json!("c".repeat(129)))));
    cases.push(bad(k, "event_id a number", with(e(), "event_id", json!(17))));
    cases.push(bad(k, "customer_id an object", with(e(), "customer_id", json!({ "id": "c" }))));
    cases.push(bad(k, "customer_id an array", with(e(), "customer_id", json!(["c"]))));
    cases.push(bad(k, "event_id a boolean", with(e(), "event_id", json!(true))));

    // Common fields: timestamps.
    let ts = |s: &str| with(event("session"), "timestamp", json!(s));
    let k = "session";
    for good in [
        "2026-11-25T13:53:06Z",
        "2026-11-25T13:53:06.250Z",
        "2026-11-25T13:53:06.123456789Z",
        "2026-11-25T14:53:06+01:00",
        "2026-11-25T08:23:06-05:30",
        "2026-11-25T13:53:06-00:00",
        "2026-11-25t13:53:06z",
        "2000-01-01T00:00:00Z",
        "2099-12-31T23:59:59.999Z",
        "2028-02-29T12:00:00Z",
    ] {
        cases.push(ok(k, format!("timestamp {good}"), ts(good)));
    }
    for wrong in [
        "2026-11-25T13:53:06",
        "2026-11-25T13:53:06.250",
        "1970-01-01T00:00:00Z",
        "1999-12-31T23:59:59Z",
        "2100-01-01T00:00:00Z",
        "2026-11-25",
        "2026-11-25T13:53Z",
        "2026-11-25T13:53:06+0100",
        "2026-11-25T13:53:06+01",
        "2026-11-25T13:53:06+24:00",
        "2026-11-25T13:53:06+01:60",
        "2026-11-25T13:53:06.Z",
        "2026-11-25T24:00:00Z",
        "2026-11-25T13:60:00Z",
        "2026-13-01T00:00:00Z",
        "2026-02-29T12:00:00Z",
        "2026-11-31T12:00:00Z",
        "2026-11-25T13:53:06ZZ",
        " 2026-11-25T13:53:06Z",
        "26-11-25T13:53:06Z",
        "+2026-11-25T13:53:06Z",
        "1764078786",
        "yesterday",
        "",
    ] {
        cases.push(bad(k, format!("timestamp {wrong:?}"), ts(wrong)));
    }
    cases.push(bad(k, "timestamp as epoch millis", with(event(k), "timestamp", json!(1_764_078_786_000_i64))));

    // Type.
    let e = || event("feature_used");
    cases.push(bad_any("unknown type", with(e(), "type", json!("teleport"))));
    cases.push(bad_any("type in the wrong case", with(e(), "type", json!("Feature_Used"))));
    cases.push(bad_any("type empty", with(e(), "type", json!(""))));
    cases.push(bad_any("type a number", with(e(), "type", json!(1))));
    cases.push(bad_any("not an object: array", json!([e()])));
    cases.push(bad_any("not an object: string", json!("feature_used")));
    cases.push(bad_any("not an object: null", Value::Null));
    cases.push(bad_any("empty object", json!({})));

    // feature_used.
    let k = "feature_used";
    cases.push(ok(k, "quantity 0", with(e(), "quantity", json!(0))));
    cases.push(ok(k, "quantity fractional", with(e(), "quantity", json!(0.25))));
    cases.push(ok(k, "quantity -0.0", with(e(), "quantity", json!(-0.0))));
    cases.push(ok(k, "quantity huge", with(e(), "quantity", json!(1e300))));
    cases.push(bad(k, "quantity negative", with(e(), "quantity", json!(-1))));
    cases.push(bad(k, "quantity a string", with(e(), "quantity", json!("3"))));
    cases.push(bad(k, "quantity a boolean", with(e(), "quantity", json!(true))));
    cases.push(bad(k, "feature empty", with(e(), "feature", json!(""))));
    cases.push(bad(k, "feature of 129 chars", with(e(), "feature", json!("f".repeat(129)))));
    cases.push(bad(k, "feature a number", with(e(), "feature", json!(7))));
    cases.push(bad(k, "user_id empty", with(e(), "user_id", json!(""))));
    cases.push(bad(k, "user_id of 129 chars", with(e(), "user_id", json!("u".repeat(129)))));
    cases.push(bad(k, "user_id a number", with(e(), "user_id", json!(12)))); // its own field, so no bug here

    // session.
    let k = "session";
    let e = || event(k);
    cases.push(ok(k, "duration 0", with(e(), "duration_seconds", json!(0))));
    cases.push(bad(k, "duration negative", with(e(), "duration_seconds", json!(-0.5))));
    cases.push(bad(k, "duration a string", with(e(), "duration_seconds", json!("5"))));
    cases.push(bad(k, "user_id empty", with(e(), "user_id", json!(""))));

    // ticket_opened and friends.
    let k = "ticket_opened";
    let e = || event(k);
    for p in ["low", "normal", "high", "urgent"] {
        cases.push(ok(k, format!("priority {p}"), with(e(), "priority", json!(p))));
    }
    cases.push(bad(k, "priority asap", with(e(), "priority", json!("asap"))));
    cases.push(bad(k, "priority URGENT", with(e(), "priority", json!("URGENT"))));
    cases.push(bad(k, "priority empty", with(e(), "priority", json!(""))));
    cases.push(bad(k, "priority a number", with(e(), "priority", json!(3))));
    cases.push(bad(k, "ticket_id empty", with(e(), "ticket_id", json!(""))));
    cases.push(bad(k, "ticket_id a number", with(e(), "ticket_id", json!(1234))));
    cases.push(bad(
        "ticket_resolved",
        "ticket_id of 129 chars",
        with(event("ticket_resolved"), "ticket_id", json!("t".repeat(129))),
    ));
    cases.push(bad("ticket_reopened", "ticket_id empty", with(event("ticket_reopened"), "ticket_id", json!(""))));

    // csat_response.
    let k = "csat_response";
    let e = || event(k);
    for r in [json!(1), json!(5), json!(3.0)] {
        cases.push(ok(k, format!("rating {r}"), with(e(), "rating", r)));
    }
    for r in [json!(0), json!(6), json!(-1), json!(4.5), json!("4"), json!(true)] {
        cases.push(bad(k, format!("rating {r}"), with(e(), "rating", r)));
    }
    cases.push(bad(k, "ticket_id empty", with(e(), "ticket_id", json!(""))));
    cases.push(bad(k, "ticket_id a number", with(e(), "ticket_id", json!(9))));

    // nps_response.
    let k = "nps_response";
    let e = || event(k);
    for s in [json!(0), json!(10), json!(-0.0), json!(7.0)] {
        cases.push(ok(k, format!("score {s}"), with(e(), "score", s)));
    }
    for s in [json!(-1), json!(11), json!(7.5), json!("9"), json!(null), json!([9])] {
        cases.push(bad(k, format!("score {s}"), with(e(), "score", s)));
    }

    // subscription_started / changed.
    let k = "subscription_started";
    let e = || event(k);
    cases.push(ok(k, "mrr 0", with(e(), "mrr", json!(0))));
    cases.push(ok(k, "seats 0", with(e(), "seats", json!(0))));
    cases.push(ok(k, "seats 4294967295", with(e(), "seats", json!(4_294_967_295_u64))));
    cases.push(bad(k, "mrr negative", with(e(), "mrr", json!(-0.01))));
    cases.push(bad(k, "mrr a string", with(e(), "mrr", json!("499"))));
    cases.push(bad(k, "seats fractional", with(e(), "seats", json!(2.5))));
    cases.push(bad(k, "seats negative", with(e(), "seats", json!(-1))));
    cases.push(bad(k, "seats a string", with(e(), "seats", json!("10"))));
    cases.push(bad(k, "plan empty", with(e(), "plan", json!(""))));
    cases.push(bad(k, "plan of 129 chars", with(e(), "plan", json!("p".repeat(129)))));
    cases.push(ok(k, "renewal_date a date", with(e(), "renewal_date", json!("2027-03-01"))));
    cases.push(ok(k, "renewal_date a date-time", with(e(), "renewal_date", json!("2027-03-01T09:00:00-08:00"))));
    cases.push(bad(k, "renewal_date 30 Feb", with(e(), "renewal_date", json!("2027-02-30"))));
    cases.push(bad(k, "renewal_date US format", with(e(), "renewal_date", json!("03/01/2027"))));
    cases.push(bad(k, "renewal_date without offset", with(e(), "renewal_date", json!("2027-03-01T00:00:00"))));
    cases.push(bad(k, "renewal_date in 1999", with(e(), "renewal_date", json!("1999-03-01"))));
    cases.push(bad(k, "renewal_date in 2100", with(e(), "renewal_date", json!("2100-03-01"))));
    cases.push(bad(k, "renewal_date short", with(e(), "renewal_date", json!("2027-3-1"))));
    cases.push(bad(k, "renewal_date a number", with(e(), "renewal_date", json!(20270301))));
    let k = "subscription_changed";
    cases.push(bad(k, "mrr negative", with(event(k), "mrr", json!(-5))));
    cases.push(bad(k, "seats fractional", with(event(k), "seats", json!(1.5))));

    // subscription_renewed / cancelled.
    let k = "subscription_renewed";
    cases.push(ok(k, "renewal_date a date-time", with(event(k), "renewal_date", json!("2027-11-01T00:00:00Z"))));
    cases.push(bad(k, "renewal_date empty", with(event(k), "renewal_date", json!(""))));
    cases.push(bad(k, "renewal_date a word", with(event(k), "renewal_date", json!("next year"))));
    let k = "subscription_cancelled";
    cases.push(ok(k, "reason empty", with(event(k), "reason", json!(""))));
    cases.push(ok(
        k,
        "effective_date a date-time",
        with(event(k), "effective_date", json!("2027-01-31T23:59:59+09:00")),
    ));
    cases.push(bad(k, "reason a number", with(event(k), "reason", json!(42))));
    cases.push(bad(k, "effective_date bad", with(event(k), "effective_date", json!("2027-01-32"))));

    // Invoices.
    for k in ["invoice_paid", "payment_failed", "invoice_overdue"] {
        let e = || event(k);
        cases.push(ok(k, "amount 0", with(e(), "amount", json!(0))));
        cases.push(ok(k, "days_overdue 0", with(e(), "days_overdue", json!(0))));
        cases.push(bad(k, "amount negative", with(e(), "amount", json!(-1))));
        cases.push(bad(k, "amount a string", with(e(), "amount", json!("12.50"))));
        cases.push(bad(k, "days_overdue fractional", with(e(), "days_overdue", json!(2.5))));
        cases.push(bad(k, "days_overdue negative", with(e(), "days_overdue", json!(-3))));
        cases.push(bad(k, "invoice_id empty", with(e(), "invoice_id", json!(""))));
        cases.push(bad(k, "invoice_id of 129 chars", with(e(), "invoice_id", json!("i".repeat(129)))));
    }

    cases
}

/// Checks each case against the schema of its type, `event.json` and the parser; returns one
/// line per disagreement.
fn disagreements(cases: &[Case]) -> Vec<String> {
    let mut validators: BTreeMap<&str, Validator> = TYPES.iter().map(|&t| (t, input_validator(t))).collect();
    validators.insert("event", input_validator("event"));
    let mut problems = Vec::new();
    for case in cases {
        let label = format!("{} / {}", case.kind.unwrap_or("-"), case.what);
        let bytes = serde_json::to_vec(&case.event).unwrap();
        let parsed = parse(&bytes, None);
        if parsed.is_ok() != case.valid {
            problems.push(format!("{label}: parser says {:?}, expected valid={}", parsed.as_ref().err(), case.valid));
        }
        // A valid event must also pass on its own topic.
        if let (Ok(e), Some(source)) = (&parsed, case.kind.and_then(source_of_type)) {
            assert_eq!(e.kind.type_name(), case.kind.unwrap());
            if let Err(r) = parse(&bytes, Some(source)) {
                problems.push(format!("{label}: parser rejects it on its own topic: {r}"));
            }
        }
        let mut schemas = vec!["event"];
        schemas.extend(case.kind);
        for schema in schemas {
            let errs = errors(&validators[schema], &case.event);
            if errs.is_empty() != case.valid {
                problems.push(format!(
                    "{label}: {schema}.json says valid={}, expected {}: {errs:?}",
                    errs.is_empty(),
                    case.valid
                ));
            }
        }
    }
    problems
}

#[test]
fn input_schemas_agree_with_the_parser() {
    let mut cases = agreement_cases();
    cases.extend(parser_regression_cases());
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    for kind in TYPES {
        assert!(cases.iter().any(|c| c.kind == Some(kind) && c.valid), "no valid case for {kind}");
        assert!(cases.iter().any(|c| c.kind == Some(kind) && !c.valid), "no invalid case for {kind}");
    }
    let problems = disagreements(&cases);
    assert!(problems.is_empty(), "{} of {} cases disagree:\n{}", problems.len(), cases.len(), problems.join("\n"));
    eprintln!("{} cases agree", cases.len());
}

/// Regression cases: the parser once disagreed with the contract on each of these.
fn parser_regression_cases() -> Vec<Case> {
    vec![
        // Unknown extra fields are ignored, even when the name belongs to another event type and
        // the JSON type is not that field's.
        ok("session", "another type's field name with a string: score", with(event("session"), "score", json!("A+"))),
        ok("nps_response", "another type's field name: priority 3", with(event("nps_response"), "priority", json!(3))),
        ok(
            "ticket_opened",
            "another type's field name: amount \"12.50\"",
            with(event("ticket_opened"), "amount", json!("12.50")),
        ),
        ok(
            "feature_used",
            "another type's field name: reason {}",
            with(event("feature_used"), "reason", json!({ "code": 7 })),
        ),
        ok("invoice_paid", "another type's field name: user_id 42", with(event("invoice_paid"), "user_id", json!(42))),
        // The contract says integer ≥ 0, with no upper cap.
        ok(
            "subscription_changed",
            "seats above u32::MAX",
            with(event("subscription_changed"), "seats", json!(4_294_967_296_u64)),
        ),
        ok(
            "invoice_overdue",
            "days_overdue above u32::MAX",
            with(event("invoice_overdue"), "days_overdue", json!(5e9)),
        ),
        // RFC 3339 needs `T` (or `t`) between date and time (the `time` crate accepts any byte).
        bad(
            "session",
            "timestamp with a space separator",
            with(event("session"), "timestamp", json!("2026-11-25 13:53:06Z")),
        ),
        bad(
            "session",
            "timestamp with an X separator",
            with(event("session"), "timestamp", json!("2026-11-25X13:53:06Z")),
        ),
        bad(
            "subscription_renewed",
            "renewal_date with a _ separator",
            with(event("subscription_renewed"), "renewal_date", json!("2027-11-01_00:00:00Z")),
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Outputs
// ---------------------------------------------------------------------------------------------

fn component(name: &str, signal: &str, value: Option<f64>, points: Option<f64>, weight: f64) -> Value {
    let contribution = points.map_or(0.0, |p| p * weight);
    json!({
        "name": name,
        "signal": signal,
        "value": value,
        "points": points,
        "weight": weight,
        "contribution": contribution,
        "peers": null,
    })
}

fn score_changed_example() -> Value {
    let mut components = vec![
        component("usage", "active_days_30d", Some(18.0), Some(80.0), 0.5),
        component("support", "open_urgent_tickets", Some(1.0), Some(40.0), 0.25),
        component("sentiment", "nps_last", Some(9.0), Some(100.0), 0.25),
        component("billing", "failed_payments_30d", None, None, 0.0),
    ];
    components[0]["peers"] =
        json!("active_days_30d 18: 15 % of mature customers in segment default have more, 75 % less");
    let score: f64 = components.iter().map(|c| c["contribution"].as_f64().unwrap()).sum();
    json!({
        "type": "score_changed",
        "event_id": "0123456789abcdef0123456789abcdef",
        "customer_id": "cus-42",
        "timestamp": "2026-11-25T13:53:06.000Z",
        "score": score,
        "previous_score": 81.5,
        "band": "green",
        "previous_band": "green",
        "trend_7d": -6.5,
        "stage": "mature",
        "segment": "mid_market",
        "components": components,
        "top_drivers": ["usage", "sentiment", "support"],
        "caps": [],
        "model_version": "2026.11.1",
        "churn_probability": 0.0412,
        "churn_horizon_days": 30,
        "reason": "score_moved",
    })
}

fn first_score_example() -> Value {
    let v = with(score_changed_example(), "previous_score", Value::Null);
    let v = with(v, "previous_band", Value::Null);
    let v = with(v, "trend_7d", Value::Null);
    with(v, "reason", json!("first_score"))
}

fn alert_example() -> Value {
    json!({
        "type": "alert",
        "event_id": "fedcba9876543210fedcba9876543210",
        "customer_id": "cus-42",
        "timestamp": "2026-11-25T13:53:06.250Z",
        "rule": "urgent_ticket_usage_collapse",
        "kind": "risk",
        "severity": "critical",
        "message": "Urgent ticket open while weekly usage fell 70%",
        "score": 38.5,
        "band": "red",
        "evidence": { "open_urgent_tickets": 1, "usage_change_7d": -0.7, "ticket_id": "T-1", "last_seen": null },
        "playbook": "exec_escalation",
        "dedupe_key": "cus-42:urgent_ticket_usage_collapse:2026-W48",
        "model_version": "2026.11.1",
    })
}

#[test]
fn output_schemas_accept_and_reject_examples() {
    let score_changed = output_validator("score_changed");
    let alert = output_validator("alert");

    let sc = score_changed_example;
    let valid = [
        ("score_changed", score_changed_example()),
        ("score_changed", first_score_example()),
        ("score_changed", with(with(with(sc(), "components", json!([])), "top_drivers", json!([])), "score", json!(0))),
        ("score_changed", with(score_changed_example(), "top_drivers", json!([]))),
        ("score_changed", with(score_changed_example(), "reason", json!("final"))),
        ("score_changed", with(with(sc(), "churn_probability", Value::Null), "churn_horizon_days", Value::Null)),
        ("alert", alert_example()),
        ("alert", with(alert_example(), "evidence", json!({}))),
        ("alert", with(with(alert_example(), "kind", json!("opportunity")), "rule", json!("expansion_ready"))),
    ];
    for (kind, v) in &valid {
        let validator = if *kind == "alert" { &alert } else { &score_changed };
        assert_eq!(errors(validator, v), Vec::<String>::new(), "{kind} example should be valid: {v}");
    }
    for (kind, v) in valid.iter().filter(|(k, _)| *k == "score_changed") {
        assert_eq!(score_changed_invariants(v), Vec::<String>::new(), "{kind}: {v}");
    }

    let mut bad_component = sc();
    bad_component["components"][0].as_object_mut().unwrap().remove("weight");
    let mut heavy_component = sc();
    heavy_component["components"][0]["weight"] = json!(1.5);
    let mut skipped_points = sc();
    skipped_points["components"][0]["points"] = json!(101);
    let invalid_score_changed = [
        ("missing band", without(sc(), "band")),
        ("missing previous_score (must be null, not absent)", without(sc(), "previous_score")),
        ("missing components", without(sc(), "components")),
        ("score 101", with(sc(), "score", json!(101))),
        ("score -1", with(sc(), "score", json!(-1))),
        ("score a string", with(sc(), "score", json!("80"))),
        ("previous_score 100.5", with(sc(), "previous_score", json!(100.5))),
        ("band orange", with(sc(), "band", json!("orange"))),
        ("band Green", with(sc(), "band", json!("Green"))),
        ("previous_band orange", with(sc(), "previous_band", json!("orange"))),
        ("reason unknown", with(sc(), "reason", json!("because"))),
        ("churn_probability 1.2", with(sc(), "churn_probability", json!(1.2))),
        ("churn_probability absent (must be null)", without(sc(), "churn_probability")),
        ("churn_horizon_days 0", with(sc(), "churn_horizon_days", json!(0))),
        ("type alert", with(sc(), "type", json!("alert"))),
        ("event_id uppercase", with(sc(), "event_id", json!("0123456789ABCDEF0123456789ABCDEF"))),
        ("event_id 31 chars", with(sc(), "event_id", json!("0123456789abcdef0123456789abcde"))),
        ("timestamp without millis", with(sc(), "timestamp", json!("2026-11-25T13:53:06Z"))),
        ("timestamp with offset", with(sc(), "timestamp", json!("2026-11-25T14:53:06.000+01:00"))),
        ("timestamp 30 Feb", with(sc(), "timestamp", json!("2026-02-30T13:53:06.000Z"))),
        ("four top drivers", with(sc(), "top_drivers", json!(["usage", "sentiment", "support", "billing"]))),
        ("duplicate top drivers", with(sc(), "top_drivers", json!(["usage", "usage"]))),
        ("unknown field", with(sc(), "explanation", json!("x"))),
        ("component without weight", bad_component),
        ("component weight 1.5", heavy_component),
        ("component points 101", skipped_points),
        ("component with an extra field", {
            let mut v = sc();
            v["components"][0]["note"] = json!("x");
            v
        }),
        ("customer_id empty", with(sc(), "customer_id", json!(""))),
    ];
    for (what, v) in &invalid_score_changed {
        assert!(!score_changed.is_valid(v), "score_changed should be invalid: {what}");
    }

    let a = alert_example;
    let invalid_alert = [
        ("missing dedupe_key", without(a(), "dedupe_key")),
        ("missing evidence", without(a(), "evidence")),
        ("score 101", with(a(), "score", json!(101))),
        ("band purple", with(a(), "band", json!("purple"))),
        ("rule unknown", with(a(), "rule", json!("moon_phase"))),
        ("kind neutral", with(a(), "kind", json!("neutral"))),
        ("severity urgent", with(a(), "severity", json!("urgent"))),
        ("evidence with an object value", with(a(), "evidence", json!({ "tickets": { "open": 1 } }))),
        ("evidence with a boolean", with(a(), "evidence", json!({ "churned": true }))),
        ("evidence an array", with(a(), "evidence", json!([1, 2]))),
        ("type score_changed", with(a(), "type", json!("score_changed"))),
        ("unknown field", with(a(), "owner", json!("csm-1"))),
    ];
    for (what, v) in &invalid_alert {
        assert!(!alert.is_valid(v), "alert should be invalid: {what}");
    }

    // Each output is only valid under its own schema.
    assert!(!alert.is_valid(&score_changed_example()));
    assert!(!score_changed.is_valid(&alert_example()));

    // The invariants the schema cannot express do catch a broken breakdown.
    let mut off = sc();
    off["score"] = json!(50.0);
    off["top_drivers"] = json!(["churn"]);
    assert_eq!(score_changed_invariants(&off).len(), 2);
}

// ---------------------------------------------------------------------------------------------
// The engine's real outputs
// ---------------------------------------------------------------------------------------------

/// Scenarios that make the engine emit every kind of output and every built-in rule.
fn engine_outputs() -> Vec<Value> {
    // Every rule must fire here to have its alert checked: without the budget, which would
    // hold some back.
    let mut h = Harness::without_alert_budget();
    let renewal = healthscore::event::format_rfc3339(at(150.0));
    let customers = [("full", "pro", 10, 10), ("weak", "enterprise", 200, 3), ("tiny", "starter", 3, 1)];
    for (id, plan, seats, _) in customers {
        h.send(
            id,
            at(-10.0),
            "subscription_started",
            json!({"plan": plan, "mrr": 900, "seats": seats, "renewal_date": renewal}),
        )
        .unwrap();
    }
    for (id, _, _, users) in customers {
        h.use_product(id, 0, 80, users, &CORE);
    }
    h.send("full", at(80.0), "nps_response", json!({"score": 10})).unwrap();
    h.use_product("weak", 80, 95, 1, &["reports"]);
    for i in 0..3 {
        h.send("weak", at(95.0), "ticket_opened", json!({"ticket_id": format!("t{i}"), "priority": "urgent"})).unwrap();
        h.send("weak", at(95.1), "payment_failed", json!({"invoice_id": format!("i{i}"), "amount": 10.5})).unwrap();
    }
    h.send("weak", at(95.2), "csat_response", json!({"rating": 1})).unwrap();
    h.send("tiny", at(96.0), "subscription_cancelled", json!({"reason": "price"})).unwrap();
    h.advance(at(140.0));
    h.json()
}

#[test]
fn engine_outputs_match_the_output_schemas() {
    let outputs = engine_outputs();
    let (sc, alert) = (output_validator("score_changed"), output_validator("alert"));
    let mut rules = std::collections::BTreeSet::new();
    for o in &outputs {
        let validator = if o["type"] == "alert" { &alert } else { &sc };
        let problems = errors(validator, o);
        assert!(problems.is_empty(), "{problems:?}\n{o:#}");
        if o["type"] == "score_changed" {
            assert_eq!(score_changed_invariants_within(o, ENGINE_ROUNDING), Vec::<String>::new(), "{o:#}");
        } else {
            rules.insert(o["rule"].as_str().unwrap().to_string());
        }
    }
    assert!(outputs.iter().any(|o| o["reason"] == "final"), "an eviction was scored");
    for rule in [
        "band_downgrade",
        "sharp_drop",
        "urgent_ticket_usage_collapse",
        "payment_failed",
        "renewal_at_risk",
        "gone_quiet",
        "expansion_ready",
        "advocate_candidate",
    ] {
        assert!(rules.contains(rule), "no {rule} alert among {rules:?}");
    }
}
