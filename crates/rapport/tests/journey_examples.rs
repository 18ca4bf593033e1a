//! The worked examples of `docs/journeys.md`, end to end through the API of a running
//! server (either store), with a real webhook receiver. Their waits are scaled down from
//! hours and days to seconds so that the test runs in real time; everything else is as
//! the documentation writes it.

mod common;

use common::TestServer;
use common::receiver::{Receiver, wait_for, webhook};
use serde_json::{Value, json};
use std::collections::BTreeSet;

fn publish(s: &TestServer, journey: Value) {
    let name = journey["name"].as_str().unwrap().to_owned();
    let (status, body) = s.admin_send("POST", "/api/v1/journeys", Some(journey));
    assert_eq!(status, 201, "{body}");
    let (status, body) = s.admin_send("POST", &format!("/api/v1/journeys/{name}/publish"), None);
    assert_eq!(status, 200, "{body}");
}

fn batch(s: &TestServer, messages: Vec<Value>) {
    let (status, body) = s.post("/v1/batch", &json!({ "batch": messages }).to_string());
    assert_eq!(status, 200, "{body}");
}

/// The journey decisions on a user's timeline, oldest first.
fn decisions(s: &TestServer, user: &str) -> Vec<Value> {
    let (status, timeline) = s.admin_get(&format!(
        "/api/v1/profiles/user_id:{user}/events?limit=1000"
    ));
    assert_eq!(status, 200, "{timeline}");
    let mut out: Vec<Value> = timeline["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "journey")
        .cloned()
        .collect();
    out.reverse();
    out
}

fn in_holdout(s: &TestServer, user: &str) -> bool {
    decisions(s, user)
        .iter()
        .find(|d| d["decision"] == "entered")
        .unwrap_or_else(|| panic!("{user} never entered"))["holdout"]
        == true
}

fn flow(s: &TestServer, journey: &str) -> Value {
    let (status, flow) = s.admin_get(&format!("/api/v1/journeys/{journey}/flow"));
    assert_eq!(status, 200, "{flow}");
    flow["versions"][0].clone()
}

/// Abandoned cart: wait for `Order Completed` with the same `cart_id` (4 h, here 4 s),
/// else a reminder naming the cart; a 10 % holdout gets nothing and is counted apart.
#[test]
fn abandoned_cart() {
    let s = TestServer::start();
    let receiver = Receiver::start();
    webhook(&s, "email", &receiver);
    publish(
        &s,
        json!({
            "name": "abandoned_cart",
            "entry": {"type": "event", "condition": "event == \"Cart Updated\""},
            "reentry": {"type": "per_key", "property": "cart_id"},
            "holdout_percent": 10,
            "goal": {"event": "event == \"Order Completed\"", "within": "1d",
                     "match_entry_property": "cart_id"},
            "start": "wait_for_order",
            "nodes": {
                "wait_for_order": {"type": "wait_for_event", "timeout": "4s", "timeout_next": "remind",
                    "branches": [{"name": "ordered", "condition": "event == \"Order Completed\"",
                                  "match_entry_property": "cart_id"}]},
                "remind": {"type": "send", "destination": "email", "cap_tag": "email",
                    "template": "{\"to\": {{ profile.traits.email }}, \"cart\": {{ entry.properties.cart_id }}}"}
            }
        }),
    );
    // 40 shoppers; the even ones order their cart, one in four orders another cart.
    let mut messages = Vec::new();
    for i in 0..40 {
        let user = format!("shopper{i}");
        messages.push(json!({"type": "identify", "userId": user,
                             "traits": {"email": format!("{user}@example.com")}}));
        messages.push(
            json!({"type": "track", "userId": user, "event": "Cart Updated",
                             "properties": {"cart_id": format!("cart{i}")}}),
        );
    }
    batch(&s, messages);
    s.wait_processed();
    let orders = (0..40)
        .filter(|i| i % 2 == 0 || i % 4 == 1)
        .map(|i| {
            let cart = if i % 2 == 0 {
                format!("cart{i}")
            } else {
                "another".into()
            };
            json!({"type": "track", "userId": format!("shopper{i}"), "event": "Order Completed",
                   "properties": {"cart_id": cart}})
        })
        .collect();
    batch(&s, orders);
    s.wait_processed();

    let holdout: BTreeSet<usize> = (0..40)
        .filter(|i| in_holdout(&s, &format!("shopper{i}")))
        .collect();
    let reminded: BTreeSet<String> = (0..40)
        .filter(|i| i % 2 == 1 && !holdout.contains(i))
        .map(|i| format!("cart{i}"))
        .collect();
    wait_for("the reminders", || {
        receiver.accepted().len() >= reminded.len()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let got: Vec<Value> = receiver.accepted();
    let carts: BTreeSet<String> = got
        .iter()
        .map(|m| m["cart"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        got.len(),
        reminded.len(),
        "one reminder per abandoned cart: {got:?}"
    );
    assert_eq!(carts, reminded);
    for m in &got {
        let n = &m["cart"].as_str().unwrap()[4..];
        assert_eq!(m["to"], format!("shopper{n}@example.com"));
    }

    let v1 = flow(&s, "abandoned_cart");
    let treated_even = (0..40)
        .filter(|i| i % 2 == 0 && !holdout.contains(i))
        .count();
    assert_eq!(v1["entered"], 40 - holdout.len(), "{v1}");
    assert_eq!(v1["holdout_entered"], holdout.len(), "{v1}");
    assert_eq!(v1["converted"], treated_even, "{v1}");
    assert_eq!(
        v1["holdout_converted"],
        (0..40)
            .filter(|i| i % 2 == 0 && holdout.contains(i))
            .count(),
        "{v1}"
    );
    assert_eq!(
        v1["ways"]["wait_for_order"]["ordered"]["entered"], treated_even,
        "{v1}"
    );
    assert_eq!(
        v1["ways"]["wait_for_order"]["timeout"]["entered"],
        reminded.len(),
        "{v1}"
    );
    assert_eq!(v1["nodes"]["remind"]["actions"], reminded.len(), "{v1}");
    // An abandoner's timeline explains it.
    let odd = (0..40)
        .find(|i| i % 2 == 1 && !holdout.contains(i))
        .unwrap();
    let explained: Vec<String> = decisions(&s, &format!("shopper{odd}"))
        .iter()
        .map(|d| d["explanation"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        explained.iter().any(|e| e == "remind: sent to email"),
        "{explained:?}"
    );
}

/// Onboarding: customers who enter the segment `signed_up` wait (a day, here 1 s), then
/// pros get tips and the others one of two mails by a sticky split — each only with the
/// `marketing` consent; everyone is marked onboarded, and a customer not activated
/// within the wait (3 days, here 2 s) makes an `Onboarding Stalled` event.
#[test]
fn onboarding() {
    let s = TestServer::start();
    let receiver = Receiver::start();
    webhook(&s, "email", &receiver);
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/segments",
        Some(json!({"name": "signed_up", "expression": "traits.plan is not null"})),
    );
    assert_eq!(status, 201, "{body}");
    let mail = |next: &str| {
        json!({"type": "send", "destination": "email", "cap_tag": "email",
                                   "consent": "marketing", "next": next})
    };
    publish(
        &s,
        json!({
            "name": "onboarding",
            "entry": {"type": "segment_entered", "segment": "signed_up"},
            "goal": {"condition": "traits.activated == true", "within": "14d"},
            "start": "day_one",
            "nodes": {
                "day_one": {"type": "wait", "duration": "1s", "next": "plan"},
                "plan": {"type": "branch", "cases": [{"name": "pro", "condition": "traits.plan == \"pro\"",
                                                      "next": "pro_tips"}],
                         "else": "test_subject"},
                "pro_tips": mail("mark"),
                "test_subject": {"type": "split", "arms": [{"name": "short", "weight": 1, "next": "short_mail"},
                                                           {"name": "long", "weight": 1, "next": "long_mail"}]},
                "short_mail": mail("mark"),
                "long_mail": mail("mark"),
                "mark": {"type": "set_trait", "trait": "onboarded", "value": true, "next": "wait_active"},
                "wait_active": {"type": "wait_for_condition", "condition": "traits.activated == true",
                                "timeout": "2s", "timeout_next": "nudge"},
                "nudge": {"type": "emit", "event": "Onboarding Stalled",
                          "properties": {"step": "activation"}, "next": "end"},
                "end": {"type": "exit"}
            }
        }),
    );
    let consent =
        |granted: bool| json!({"consent": {"categoryPreferences": {"marketing": granted}}});
    let people = [
        ("ana", "pro", true),
        ("ben", "pro", false),
        ("cat", "basic", true),
        ("dan", "basic", true),
        ("eve", "basic", true),
        ("fay", "basic", false),
    ];
    batch(
        &s,
        people
            .iter()
            .map(|(u, plan, granted)| {
                json!({"type": "identify", "userId": u, "traits": {"plan": plan},
                       "context": consent(*granted)})
            })
            .collect(),
    );
    // Ana activates while she waits on day one, so she converts and is never nudged.
    batch(
        &s,
        vec![json!({"type": "identify", "userId": "ana", "traits": {"activated": true}})],
    );
    let granted = people.iter().filter(|p| p.2).count();
    wait_for("the mails", || receiver.accepted().len() >= granted);
    wait_for("every customer through", || {
        flow(&s, "onboarding")["active"] == 0
    });
    let got = receiver.accepted();
    assert_eq!(got.len(), granted, "{got:?}");
    let to: BTreeSet<(String, String)> = got
        .iter()
        .map(|m| {
            (
                m["rapport"]["identifiers"]["user_id"][0]
                    .as_str()
                    .unwrap()
                    .to_owned(),
                m["step"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(to.contains(&("ana".into(), "pro_tips".into())), "{to:?}");
    for (u, step) in &to {
        assert_ne!(u, "ben");
        assert_ne!(u, "fay");
        if u != "ana" {
            assert!(step == "short_mail" || step == "long_mail", "{to:?}");
        }
    }

    let v1 = flow(&s, "onboarding");
    assert_eq!(v1["entered"], 6, "{v1}");
    assert_eq!(v1["converted"], 1, "{v1}");
    assert_eq!(
        v1["nodes"]["pro_tips"]["skipped"]["consent"], 1,
        "ben: {v1}"
    );
    let arms = &v1["ways"]["test_subject"];
    assert_eq!(
        arms["short"]["entered"].as_u64().unwrap_or(0)
            + arms["long"]["entered"].as_u64().unwrap_or(0),
        4,
        "{v1}"
    );
    // Everyone is marked; all but Ana are nudged by an event in their name.
    for (u, _, _) in people {
        let (_, p) = s.admin_get(&format!("/api/v1/profiles/user_id:{u}"));
        assert_eq!(p["traits"]["onboarded"], true, "{u}: {p}");
    }
    wait_for("the stalled events", || {
        s.all_events("event=Onboarding%20Stalled").len() == 5
    });
    let stalled: BTreeSet<String> = s
        .all_events("event=Onboarding%20Stalled")
        .iter()
        .map(|e| e["userId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        stalled,
        ["ben", "cat", "dan", "eve", "fay"].map(String::from).into()
    );
}

/// Runs a value-model fit through the API and waits for it to succeed.
fn fit(s: &TestServer, model: &str) -> Value {
    let (status, job) = s.admin_post(&format!("/api/v1/models/{model}/fit"));
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    let mut done = Value::Null;
    wait_for("the fit", || {
        done = s.admin_get(&format!("/api/v1/jobs/{id}")).1;
        done["state"] != "running"
    });
    assert_eq!(done["state"], "succeeded", "{done:#}");
    done
}

fn segment(s: &TestServer, name: &str, expression: &str) {
    let (status, body) = s.admin_send(
        "POST",
        "/api/v1/segments",
        Some(json!({"name": name, "expression": expression})),
    );
    assert_eq!(status, 201, "{body}");
}

/// A segment's members: profile id → main identifier (`user_id:u3`).
fn members(s: &TestServer, segment: &str) -> std::collections::BTreeMap<String, String> {
    let (status, page) = s.admin_get(&format!("/api/v1/segments/{segment}/members?limit=1000"));
    assert_eq!(status, 200, "{page}");
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["profile"].as_str().unwrap().to_owned(),
                m["main_identifier"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Win-back: every week (here: once, a second after publishing) the customers whose
/// P(alive) fell below 0.3 — the segment `lapsed`, over the CLV model's score — get an
/// offer, then (2 days later, here 2 s) a reminder that the cap of one marketing email a
/// week stops, and a transactional receipt that the cap does not; a customer who orders
/// meanwhile converts and leaves at once.
#[test]
fn win_back() {
    let s = TestServer::start_with(&["--refit-interval-hours", "0"]);
    let receiver = Receiver::start();
    webhook(&s, "email", &receiver);
    let now = chrono::Utc::now().timestamp();
    for chunk in common::shop::shop(now).chunks(400) {
        batch(&s, chunk.to_vec());
    }
    s.wait_processed();
    segment(&s, "lapsed", "computed.p_alive < 0.3");
    fit(&s, "clv");
    let mut lapsed = std::collections::BTreeMap::new();
    wait_for("the lapsed segment", || {
        let (_, seg) = s.admin_get("/api/v1/segments/lapsed");
        lapsed = members(&s, "lapsed");
        seg["backfill"]["state"] == "done" && !lapsed.is_empty()
    });
    let (status, e) = s.admin_send(
        "PUT",
        "/api/v1/journeys/caps",
        Some(json!({"caps": [{"tag": "email", "max": 1, "per": "7d"}]})),
    );
    assert!(status == 200 || status == 202, "{e}");
    let starting = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
    let mail = |step: &str, next: Option<&str>, transactional: bool| {
        let mut m = json!({"type": "send", "destination": "email", "cap_tag": "email",
            "transactional": transactional,
            "template": format!("{{\"step\": \"{step}\", \"profile\": {{{{ profile.id }}}}}}")});
        if let Some(n) = next {
            m["next"] = json!(n);
        }
        m
    };
    publish(
        &s,
        json!({
            "name": "win_back",
            "entry": {"type": "schedule", "segment": "lapsed", "every": "7d",
                      "starting": starting.to_rfc3339()},
            "reentry": {"type": "after", "cooldown": "30d"},
            "goal": {"event": "event == \"Order Completed\"", "within": "14d",
                     "exit_on_conversion": true},
            "start": "fading",
            "nodes": {
                "fading": {"type": "branch",
                           "cases": [{"name": "fading", "condition": "computed.p_alive < 0.3",
                                      "next": "offer"}],
                           "else": "stop"},
                "offer": mail("offer", Some("two_days"), false),
                "two_days": {"type": "wait", "duration": "2s", "next": "reminder"},
                "reminder": mail("reminder", Some("receipt"), false),
                "receipt": mail("receipt", None, true),
                "stop": {"type": "exit"}
            }
        }),
    );
    let offers = |r: &Receiver| r.accepted().iter().filter(|m| m["step"] == "offer").count();
    wait_for("the offers", || offers(&receiver) == lapsed.len());
    // One of them comes back and orders while the reminder waits.
    let returning = receiver.accepted()[0]["profile"]
        .as_str()
        .unwrap()
        .to_owned();
    let user = lapsed[&returning]
        .strip_prefix("user_id:")
        .unwrap()
        .to_owned();
    batch(
        &s,
        vec![
            json!({"type": "track", "userId": user, "event": "Order Completed",
                    "properties": {"revenue": 30.0}}),
        ],
    );
    let stayed = lapsed.len() - 1;
    wait_for("the receipts", || {
        receiver
            .accepted()
            .iter()
            .filter(|m| m["step"] == "receipt")
            .count()
            == stayed
    });
    let v1 = flow(&s, "win_back");
    assert_eq!(v1["entered"], lapsed.len(), "{v1}");
    assert_eq!(v1["converted"], 1, "{v1}");
    assert_eq!(
        v1["nodes"]["reminder"]["skipped"]["capped"], stayed,
        "the cap: {v1}"
    );
    assert_eq!(
        v1["nodes"]["receipt"]["actions"], stayed,
        "transactional: {v1}"
    );
    assert!(
        receiver.accepted().iter().all(|m| m["step"] != "reminder"),
        "no reminder gets past the cap"
    );
    assert!(
        receiver
            .accepted()
            .iter()
            .all(|m| m["step"] == "offer" || m["profile"] != returning.as_str()),
        "the customer who came back left at once"
    );
}

/// Renewal outreach from a health alert: a health run raises `renewal_at_risk` for the
/// accounts whose renewal is near and whose health is low; the CSM tool that follows the
/// alert feed puts each in the journey through the entries API with the alert's reason;
/// 30 days before the renewal (already past here) the CSM's webhook gets a call request
/// naming the account, and an account that books no meeting within a week (here 2 s) is
/// escalated by a trait.
#[test]
fn renewal_outreach_from_a_health_alert() {
    let s = TestServer::start_with(&["--refit-interval-hours", "0"]);
    let receiver = Receiver::start();
    webhook(&s, "csm-webhook", &receiver);
    let now = chrono::Utc::now();
    for chunk in common::shop::shop(now.timestamp()).chunks(400) {
        batch(&s, chunk.to_vec());
    }
    let renewal = (now + chrono::TimeDelta::days(20)).to_rfc3339();
    batch(
        &s,
        ["u1", "u4", "u8", "u9"]
            .iter()
            .map(|u| {
                json!({"type": "identify", "userId": u,
                       "traits": {"renewal_date": renewal, "company": format!("{u} Ltd")}})
            })
            .collect(),
    );
    // Three of them have been filing support tickets.
    let mut tickets = Vec::new();
    for u in ["u1", "u8", "u9"] {
        for d in 1..=5 {
            tickets.push(
                json!({"type": "track", "userId": u, "event": "Ticket Created",
                                "timestamp": (now - chrono::TimeDelta::days(d * 3)).to_rfc3339()}),
            );
        }
    }
    batch(&s, tickets);
    s.wait_processed();
    publish(
        &s,
        json!({
            "name": "renewal_outreach",
            "entry": {"type": "api"},
            "reentry": {"type": "after", "cooldown": "90d"},
            "goal": {"event": "event == \"Subscription Renewed\"", "within": "60d"},
            "start": "month_before",
            "nodes": {
                "month_before": {"type": "wait_until", "until": {"trait": "renewal_date", "offset": "-30d"},
                                 "next": "call_csm"},
                "call_csm": {"type": "send", "destination": "csm-webhook", "transactional": true,
                    "template": "{\"account\": {{ profile.traits.company }}, \"reason\": {{ entry.properties.reason }}, \"score\": {{ entry.properties.score }}}",
                    "next": "meeting"},
                "meeting": {"type": "wait_for_event", "timeout": "2s", "timeout_next": "escalate",
                            "branches": [{"name": "booked", "condition": "event == \"Meeting Booked\""}]},
                "escalate": {"type": "set_trait", "trait": "renewal_risk", "value": "escalated"}
            }
        }),
    );
    fit(&s, "clv");
    fit(&s, "health");
    let (status, alerts) = s.admin_get("/api/v1/alerts?limit=1000");
    assert_eq!(status, 200, "{alerts}");
    let at_risk: Vec<Value> = alerts["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "renewal_at_risk")
        .cloned()
        .collect();
    assert!(!at_risk.is_empty(), "{alerts:#}");
    for a in &at_risk {
        let (status, e) = s.admin_send(
            "POST",
            "/api/v1/journeys/renewal_outreach/entries",
            Some(json!({"profile": a["profile"],
                        "properties": {"reason": a["reason"], "score": a["score"]}})),
        );
        assert_eq!(status, 202, "{e}");
    }
    wait_for("the call requests", || {
        receiver.accepted().len() == at_risk.len()
    });
    let first = &at_risk[0];
    let (_, p) = s.admin_get(&format!(
        "/api/v1/profiles/{}",
        first["profile"].as_str().unwrap()
    ));
    let company = p["traits"]["company"].as_str().unwrap().to_owned();
    let call = receiver
        .accepted()
        .into_iter()
        .find(|m| m["account"] == company.as_str())
        .unwrap_or_else(|| panic!("no call for {company}"));
    assert_eq!(call["reason"], first["reason"]);
    assert_eq!(call["score"], first["score"]);
    // The first account books a meeting; the others are escalated.
    let user = company.strip_suffix(" Ltd").unwrap().to_owned();
    batch(
        &s,
        vec![json!({"type": "track", "userId": user, "event": "Meeting Booked"})],
    );
    wait_for("everyone through", || {
        flow(&s, "renewal_outreach")["active"] == 0
    });
    let v1 = flow(&s, "renewal_outreach");
    assert_eq!(v1["entered"], at_risk.len(), "{v1}");
    assert_eq!(v1["ways"]["meeting"]["booked"]["entered"], 1, "{v1}");
    assert_eq!(
        v1["nodes"]["escalate"]["actions"],
        at_risk.len() - 1,
        "{v1}"
    );
    let (_, booked) = s.admin_get(&format!("/api/v1/profiles/user_id:{user}"));
    assert!(booked["traits"]["renewal_risk"].is_null(), "{booked}");
    for a in &at_risk[1..] {
        let (_, p) = s.admin_get(&format!(
            "/api/v1/profiles/{}",
            a["profile"].as_str().unwrap()
        ));
        assert_eq!(p["traits"]["renewal_risk"], "escalated", "{p}");
    }
}
