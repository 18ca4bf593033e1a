use super::*;

fn ids() -> MessageIds {
    MessageIds::new("test.csv")
}

fn spec(pairs: &[(&str, &str)], default_type: Option<EventType>) -> MappingSpec {
    let mut s = MappingSpec {
        default_type,
        ..Default::default()
    };
    for (c, t) in pairs {
        s.columns.entry((*c).into()).or_default().target = Some(parse_target(t).unwrap());
    }
    s
}

fn headers(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| (*s).to_owned()).collect()
}

#[test]
fn a_default_event_names_track_rows_that_lack_one() {
    let mut s = spec(&[], Some(EventType::Track));
    s.default_event = Some("Order Completed".into());
    let plan = s.plan(&headers(&["userId", "event", "total"])).unwrap();
    let (_, own) = plan.message(&["u1", "Refunded", "5"]).unwrap();
    assert_eq!(own["event"], "Refunded");
    let (_, filled) = plan.message(&["u1", "", "5"]).unwrap();
    assert_eq!(filled["event"], "Order Completed");
    // Only track calls have an event name.
    let mut s = spec(&[], Some(EventType::Identify));
    s.default_event = Some("Order Completed".into());
    let plan = s.plan(&headers(&["userId", "plan"])).unwrap();
    let (_, msg) = plan.message(&["u1", "pro"]).unwrap();
    assert!(msg.get("event").is_none(), "{msg:?}");
    let file = MappingSpec::from_toml("type = \"track\"\nevent = \"Paid\"\n").unwrap();
    assert_eq!(file.default_event.as_deref(), Some("Paid"));
}

fn read_all_csv(text: &str, spec: &MappingSpec) -> Vec<Parsed> {
    let mut rdr = csv_reader(text.as_bytes(), b',');
    let plan = csv_plan(&mut rdr, spec).unwrap();
    let mut out = Vec::new();
    read_csv(&mut rdr, &plan, &ids(), &Limits::default(), &mut |p| {
        out.push(p);
        true
    })
    .unwrap();
    out
}

fn message(p: &Parsed) -> Value {
    match p {
        Parsed::Message(m) => serde_json::from_str(&m.json).unwrap(),
        Parsed::Rejected(r) => panic!("line {} rejected: {:?}", r.line, r.error),
    }
}

fn line_of(p: &Parsed) -> u64 {
    match p {
        Parsed::Message(m) => m.line,
        Parsed::Rejected(r) => r.line,
    }
}

#[test]
fn cells_are_strings_unless_declared() {
    assert_eq!(convert_cell("007", CellType::String).unwrap(), "007");
    assert_eq!(convert_cell("007", CellType::Number).unwrap(), 7);
    assert_eq!(convert_cell("-3", CellType::Number).unwrap(), -3);
    assert_eq!(convert_cell("42.5", CellType::Number).unwrap(), 42.5);
    assert_eq!(
        convert_cell("18446744073709551615", CellType::Number).unwrap(),
        u64::MAX
    );
    assert!(convert_cell("12abc", CellType::Number).is_err());
    assert!(convert_cell("NaN", CellType::Number).is_err());
    assert!(convert_cell("inf", CellType::Number).is_err());
    for (t, v) in [("true", true), ("YES", true), ("1", true), ("False", false)] {
        assert_eq!(convert_cell(t, CellType::Bool).unwrap(), v);
    }
    assert!(convert_cell("maybe", CellType::Bool).is_err());
    assert_eq!(
        convert_cell(r#"["a",1]"#, CellType::Json).unwrap(),
        serde_json::json!(["a", 1])
    );
    assert!(convert_cell("[1,", CellType::Json).is_err());
}

#[test]
fn targets() {
    assert_eq!(parse_target("userId").unwrap(), Target::Field("userId"));
    assert_eq!(
        parse_target("context.page.url").unwrap(),
        Target::Nested(Object::Context, vec!["page".into(), "url".into()])
    );
    assert_eq!(
        parse_target("traits.email").unwrap(),
        Target::Nested(Object::Traits, vec!["email".into()])
    );
    assert!(parse_target("traits.").is_err());
    assert!(parse_target("traits..x").is_err());
    assert!(parse_target("user").is_err());
    assert!(parse_target("traits").is_err());
}

#[test]
fn columns_named_like_segment_fields_map_to_them() {
    let plan = MappingSpec::default()
        .plan(&headers(&["user_id", "AnonymousId", "event", "plan"]))
        .unwrap();
    let targets: Vec<_> = plan.columns.iter().map(|c| c.target.clone()).collect();
    assert_eq!(
        targets,
        vec![
            Target::Field("userId"),
            Target::Field("anonymousId"),
            Target::Field("event"),
            Target::Default
        ]
    );
}

#[test]
fn plan_errors() {
    let h = headers(&["userId", "user_id"]);
    assert!(
        MappingSpec::default()
            .plan(&h)
            .unwrap_err()
            .contains("both map")
    );
    let h = headers(&["a", "a"]);
    assert!(
        MappingSpec::default()
            .plan(&h)
            .unwrap_err()
            .contains("twice")
    );
    let s = spec(&[("missing", "userId")], None);
    assert!(
        s.plan(&headers(&["a"]))
            .unwrap_err()
            .contains("not in the header")
    );
}

#[test]
fn unmapped_columns_become_traits_or_properties_by_type() {
    let plan = MappingSpec::default()
        .plan(&headers(&["userId", "type", "event", "plan", "name"]))
        .unwrap();
    let (_, m) = plan.message(&["u1", "identify", "", "pro", "Ann"]).unwrap();
    assert_eq!(
        Value::Object(m),
        serde_json::json!({"type":"identify","userId":"u1","traits":{"plan":"pro","name":"Ann"}})
    );
    let (_, m) = plan.message(&["u1", "track", "Paid", "pro", ""]).unwrap();
    assert_eq!(
        Value::Object(m),
        serde_json::json!({"type":"track","userId":"u1","event":"Paid","properties":{"plan":"pro"}})
    );
    // On a page row a column named `name` is the page's name.
    let (_, m) = plan.message(&["u1", "page", "", "", "Pricing"]).unwrap();
    assert_eq!(
        Value::Object(m),
        serde_json::json!({"type":"page","userId":"u1","name":"Pricing"})
    );
}

#[test]
fn explicit_mapping_types_and_ignore() {
    let mut s = spec(
        &[
            ("id", "userId"),
            ("mail", "traits.email"),
            ("city", "traits.address.city"),
            ("ip", "context.ip"),
            ("when", "timestamp"),
        ],
        Some(EventType::Identify),
    );
    s.columns.entry("age".into()).or_default().cell = Some(CellType::Number);
    s.columns.entry("vip".into()).or_default().cell = Some(CellType::Bool);
    s.columns.entry("secret".into()).or_default().target = Some(Target::Ignore);
    let plan = s
        .plan(&headers(&[
            "id", "mail", "city", "ip", "when", "age", "vip", "secret", "zip",
        ]))
        .unwrap();
    let (kind, m) = plan
        .message(&[
            "007",
            "a@b.c",
            "Lyon",
            "203.0.113.9",
            "2024-01-02T03:04:05Z",
            "41",
            "yes",
            "hunter2",
            "01234",
        ])
        .unwrap();
    assert_eq!(kind, EventType::Identify);
    assert_eq!(
        Value::Object(m),
        serde_json::json!({
            "type": "identify",
            "userId": "007",
            "traits": {"email": "a@b.c", "address": {"city": "Lyon"}, "age": 41, "vip": true,
                       "zip": "01234"},
            "context": {"ip": "203.0.113.9"},
            "timestamp": "2024-01-02T03:04:05Z"
        })
    );
    let err = plan
        .message(&["u", "", "", "", "", "forty", "", "", ""])
        .unwrap_err();
    assert_eq!(
        err.message,
        "column \"age\": expected a number, got \"forty\""
    );
}

#[test]
fn mapping_file() {
    let s = MappingSpec::from_toml(
        r#"
        type = "track"
        [columns]
        customer = "userId"
        amount = { target = "properties.revenue", type = "number" }
        internal = "-"
        notes = { ignore = true }
        flag = { type = "bool" }
        "#,
    )
    .unwrap();
    assert_eq!(s.default_type, Some(EventType::Track));
    let plan = s
        .plan(&headers(&[
            "customer", "event", "amount", "internal", "notes", "flag",
        ]))
        .unwrap();
    let (_, m) = plan
        .message(&["c1", "Order", "19.90", "x", "y", "0"])
        .unwrap();
    assert_eq!(
        Value::Object(m),
        serde_json::json!({"type":"track","userId":"c1","event":"Order",
                           "properties":{"revenue":19.9,"flag":false}})
    );
    assert!(MappingSpec::from_toml("[columns]\na = \"nope\"").is_err());
    assert!(MappingSpec::from_toml("[columns]\na = { type = \"date\" }").is_err());
    assert!(MappingSpec::from_toml("typo = 1").is_err());
}

#[test]
fn csv_lines_are_where_records_start_even_with_quoted_newlines() {
    let text = "userId,event,note\n\
                u1,Signed Up,plain\n\
                u2,Paid,\"two\nlines\"\n\
                u3,Paid,after\n\
                \n\
                u4,Paid\n\
                ,Paid,no id\r\n\
                \r\n\
                u6,,no event";
    let out = read_all_csv(text, &spec(&[], Some(EventType::Track)));
    let lines: Vec<u64> = out.iter().map(line_of).collect();
    assert_eq!(lines, vec![2, 3, 5, 7, 8, 10]);
    assert_eq!(message(&out[1])["properties"]["note"], "two\nlines");
    assert_eq!(message(&out[2])["userId"], "u3");
    let errors: Vec<String> = out
        .iter()
        .filter_map(|p| match p {
            Parsed::Rejected(r) => Some(format!("{}: {}", r.line, r.error.message)),
            _ => None,
        })
        .collect();
    assert_eq!(
        errors,
        vec![
            "7: expected 3 columns (as in the header), found 2",
            "8: either `userId` or `anonymousId` is required",
            "10: `event` is required in a track call",
        ]
    );
}

#[test]
fn csv_validation_matches_the_server() {
    let text = "userId,timestamp\nu1,2024-01-02\nu2,yesterday\n";
    let out = read_all_csv(text, &spec(&[], Some(EventType::Identify)));
    assert_eq!(message(&out[0])["timestamp"], "2024-01-02");
    match &out[1] {
        Parsed::Rejected(r) => {
            assert_eq!(r.line, 3);
            assert_eq!(r.error.code, "invalid_timestamp");
            assert_eq!(r.error.field.as_deref(), Some("timestamp"));
            assert_eq!(r.record["timestamp"], "yesterday");
        }
        _ => panic!("expected a rejection"),
    }
}

#[test]
fn message_ids_are_deterministic() {
    let text = "userId,type\nu1,identify\nu1,identify\n";
    let a = read_all_csv(text, &MappingSpec::default());
    let b = read_all_csv(text, &MappingSpec::default());
    let id = |p: &Parsed| message(p)["messageId"].as_str().unwrap().to_owned();
    assert_eq!(id(&a[0]), id(&b[0]));
    assert_ne!(
        id(&a[0]),
        id(&a[1]),
        "identical rows on two lines stay apart"
    );
    assert!(id(&a[0]).contains("-L2-"));
    assert_ne!(
        MessageIds::new("a.csv").id(2, b"x"),
        MessageIds::new("b.csv").id(2, b"x")
    );
    assert_ne!(ids().id(2, b"x"), ids().id(2, b"y"));
    // A row's own messageId wins.
    let text = "userId,messageId\nu1,m-1\n";
    let out = read_all_csv(text, &spec(&[], Some(EventType::Identify)));
    assert_eq!(message(&out[0])["messageId"], "m-1");
}

fn nd(text: &str, default_type: Option<EventType>) -> Result<String, LineError> {
    ndjson_message(text, 5, default_type, &ids(), &Limits::default())
}

#[test]
fn ndjson_lines_keep_their_bytes_and_gain_an_id() {
    let line = r#"{"type":"track","userId":"u","event":"E","properties":{"x":1.50}}"#;
    let out = nd(line, None).unwrap();
    assert_eq!(
        out,
        format!(
            r#"{{"messageId":"{}",{}"#,
            ids().id(5, line.as_bytes()),
            &line[1..]
        )
    );
    assert!(out.contains(r#""x":1.50"#), "numbers kept as written");
    // An id of its own is kept; the line is sent unchanged.
    let line = r#"{"type":"identify","userId":"u","messageId":"m1"}"#;
    assert_eq!(nd(line, None).unwrap(), line);
    // --type fills a missing type.
    let v: Value =
        serde_json::from_str(&nd(r#"{"userId":"u"}"#, Some(EventType::Identify)).unwrap()).unwrap();
    assert_eq!(v["type"], "identify");
    // A null messageId is replaced.
    let v: Value = serde_json::from_str(
        &nd(r#"{"type":"identify","userId":"u","messageId":null}"#, None).unwrap(),
    )
    .unwrap();
    assert!(v["messageId"].as_str().unwrap().starts_with("import-"));
    // A given type wins over --type.
    let v: Value = serde_json::from_str(
        &nd(
            r#"{"type":"track","event":"E","userId":"u"}"#,
            Some(EventType::Identify),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(v["type"], "track");
}

#[test]
fn ndjson_errors() {
    let code = |t: &str| nd(t, None).unwrap_err().code;
    assert_eq!(code(r#"{"type":"track","userId":"u""#), "invalid_json");
    assert_eq!(code("[1]"), "invalid_json");
    assert_eq!(code(r#"{"userId":"u"}"#), "missing_field");
    assert_eq!(code(r#"{"type":"buy","userId":"u"}"#), "invalid_type");
    assert_eq!(code(r#"{"type":"track","event":"E"}"#), "missing_identity");
    assert_eq!(
        code(r#"{"type":"track","userId":"u","event":"E","timestamp":"nope"}"#),
        "invalid_timestamp"
    );
    let big = format!(
        r#"{{"type":"identify","userId":"u","traits":{{"x":"{}"}}}}"#,
        "a".repeat(40_000)
    );
    assert_eq!(code(&big), "event_too_large");
}

#[test]
fn ndjson_reader_numbers_lines_and_skips_blank_ones() {
    let text = "\u{feff}{\"type\":\"identify\",\"userId\":\"a\"}\n\n  \r\n{bad\r\n{\"type\":\"identify\",\"userId\":\"b\"}";
    let mut out = Vec::new();
    read_ndjson(
        text.as_bytes(),
        None,
        &ids(),
        &Limits::default(),
        &mut |p| {
            out.push(p);
            true
        },
    )
    .unwrap();
    let lines: Vec<u64> = out.iter().map(line_of).collect();
    assert_eq!(lines, vec![1, 4, 5]);
    assert!(matches!(&out[1], Parsed::Rejected(r) if r.record == "{bad"));
    assert_eq!(message(&out[2])["userId"], "b");
}

#[test]
fn batches_stay_within_limits() {
    let m = |line: u64, len: usize| Prepared {
        line,
        json: "x".repeat(len),
    };
    let mut b = Batcher::new(3, 100);
    assert!(b.push(m(1, 10)).is_none());
    assert!(b.push(m(2, 10)).is_none());
    assert!(b.push(m(3, 10)).is_none());
    let full = b.push(m(4, 10)).unwrap();
    assert_eq!(full.items.len(), 3);
    let full = b.push(m(5, 80)).unwrap();
    assert_eq!(
        full.items.iter().map(|m| m.line).collect::<Vec<_>>(),
        vec![4]
    );
    let last = b.finish().unwrap();
    assert_eq!(last.items[0].line, 5);
    assert!(last.body().len() <= 100);
    let batch = Batch {
        items: vec![m(1, 1), m(2, 1), m(3, 1)],
        bytes: 6,
    };
    assert_eq!(batch.body(), r#"{"batch":[x,x,x]}"#);
    let (a, b) = batch.split();
    assert_eq!((a.items.len(), b.items.len()), (1, 2));
}

#[test]
fn server_fields_lose_their_batch_prefix() {
    assert_eq!(
        item_field(Some("batch[12].timestamp".into())).as_deref(),
        Some("timestamp")
    );
    assert_eq!(
        item_field(Some("batch[0]".into())).as_deref(),
        Some("batch[0]")
    );
    assert_eq!(item_field(None), None);
}
