//! Audiences: computed traits and segments — their definitions, a segment's members and
//! size over time, the evaluation of existing profiles (backfill), and the feed of segment
//! entries and exits (`docs/segments.md`).
//!
//! Times are RFC 3339 strings in UTC (see [`crate::time`]); counts are whole numbers.

use crate::page::Limit;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// The body of `POST /api/v1/computed-traits` and `PUT /api/v1/computed-traits/{name}`:
/// either `expression` (one aggregate in the segment language, e.g.
/// `count(event == "Order Completed", within 30d)`) or `function` with `property`,
/// `event`, `where` and `window`, which are turned into one. Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputedTraitDefinition {
    /// Unique among computed traits; used as `computed.<name>` in expressions. Optional in
    /// a `PUT`, whose URL names the trait (if given, it must be the same).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What the trait is for, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// One aggregate in the segment language.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// `count`, `sum`, `avg`, `min`, `max`, `first`, `last`, `first_seen`, `last_seen`,
    /// `most_frequent`, `unique`, `unique_count`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The event property aggregated: `revenue` or `properties.revenue`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub property: Option<String>,
    /// Only track events with this name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// A further condition over `event`, `type` and `properties.…`.
    #[serde(rename = "where", default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// A sliding window such as `30d` or `12h`; absent: all time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
}

/// The body of `POST /api/v1/segments` and `PUT /api/v1/segments/{name}`. Unknown fields
/// are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentDefinition {
    /// Unique among segments; used in `in_segment("<name>")` and URLs. Optional in a
    /// `PUT`, whose URL names the segment (if given, it must be the same).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// What the segment is for, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The condition, in the segment language (`docs/segment-language.md`).
    pub expression: String,
}

/// The body of `POST /api/v1/segments/check`: a segment definition to check and preview
/// without saving it. Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SegmentCheckRequest {
    /// The definition as it would be saved; `name` may be empty while it is being written.
    pub definition: SegmentDefinition,
    /// How many profiles to evaluate, 1 to 100,000 (default 10,000), in profile-id order
    /// (oldest first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// The body of `POST /api/v1/computed-traits/check`, as [`SegmentCheckRequest`] for a
/// computed trait.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ComputedTraitCheckRequest {
    /// The definition as it would be saved; `name` may be empty while it is being written.
    pub definition: ComputedTraitDefinition,
    /// How many profiles to evaluate, 1 to 100,000 (default 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

/// A problem that saving the definition would refuse: which field, and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DefinitionProblem {
    /// `name`, `expression`, `function`, `property`, `event`, `where` or `window`.
    pub field: String,
    pub message: String,
    /// `invalid_field`, or `conflict` when the change would change the meaning of
    /// segments that read the computed trait.
    pub code: String,
}

/// A profile the previewed definition matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PreviewExample {
    pub profile: String,
    /// As for [`Member::main_identifier`].
    pub main_identifier: Option<String>,
    /// The computed trait's value under its name (`{"orders": 3}`), as in a profile's
    /// `computed`, so that a `read_masked` key sees it masked when the name is personal
    /// data; absent for a segment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub computed: Option<serde_json::Map<String, serde_json::Value>>,
}

/// How many profiles a definition would match now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DefinitionPreview {
    /// Live profiles evaluated.
    pub profiles_read: u64,
    /// Live profiles in the store (exactly, when `exact`; else the processor's count).
    pub profiles_total: u64,
    /// Whether every live profile was evaluated: `matching` is then the size the segment
    /// (or the number of profiles with a value) would have now. Otherwise it counts among
    /// the oldest `profiles_read` only.
    pub exact: bool,
    /// Profiles in the segment, or for which the computed trait's value is not empty
    /// (absent, `null`, `0`, `false`, `""` and `[]` are empty).
    pub matching: u64,
    /// Up to five of them.
    pub examples: Vec<PreviewExample>,
}

/// What checking a definition found: the problems saving it would refuse (then no
/// preview), or none and the preview.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DefinitionCheck {
    /// Whether it can be saved as it is.
    pub valid: bool,
    pub errors: Vec<DefinitionProblem>,
    /// The aggregate in canonical form (computed traits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expression: Option<String>,
    /// `number`, `timestamp`, `list` or `trait value` (computed traits only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    pub preview: Option<DefinitionPreview>,
}

/// A computed trait as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ComputedTrait {
    pub name: String,
    /// Absent when none was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The aggregate in canonical segment-language form, e.g.
    /// `count(event == "Order Completed", within 30d)`.
    pub expression: String,
    /// The type of its values: `number`, `string`, `boolean`, `timestamp`, `list`, …
    pub value_type: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Where the evaluation of existing profiles against the current definitions stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BackfillState {
    /// The processor has not started evaluating the current definitions.
    Pending,
    /// Existing profiles are being evaluated.
    Running,
    /// Every profile reflects the current definitions.
    Done,
}

impl BackfillState {
    /// The name on the wire: `pending`, `running`, `done`.
    pub fn as_str(self) -> &'static str {
        match self {
            BackfillState::Pending => "pending",
            BackfillState::Running => "running",
            BackfillState::Done => "done",
        }
    }
}

/// How far evaluating the current definitions over existing profiles has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Backfill {
    pub state: BackfillState,
    /// Profiles evaluated so far (0 while `pending`).
    pub processed: u64,
    /// Profiles to evaluate.
    pub total: u64,
    /// RFC 3339; absent while `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// RFC 3339; absent until `done`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

/// A segment as the API shows it: its definition, its size and the backfill.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Segment {
    pub name: String,
    /// Absent when none was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The condition, in the segment language.
    pub expression: String,
    /// Members now.
    pub size: u64,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
    /// The evaluation of existing profiles against the current definitions (of every
    /// trait and segment, not only this one).
    pub backfill: Backfill,
}

/// A member of a segment (`GET /api/v1/segments/{name}/members`, a `Page` by profile id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    /// The profile's id, `p_…`.
    pub profile: String,
    /// The member's user id, else e-mail, phone or anonymous id, as `kind:value`
    /// (`user_id:42`); `null` when it has none.
    pub main_identifier: Option<String>,
    /// RFC 3339: when the profile entered the segment.
    pub entered_at: String,
}

/// A segment's size at the end of one hour (`GET /api/v1/segments/{name}/size-history`,
/// a `List`, oldest first, one point per hour in which the size changed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SizePoint {
    /// RFC 3339: the start of the hour (UTC).
    pub hour: String,
    /// Members at the end of that hour (or now, for the current hour).
    pub size: u64,
}

/// Whether a profile entered or left a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Entered,
    Exited,
}

impl ChangeKind {
    /// The name on the wire: `entered`, `exited`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Entered => "entered",
            ChangeKind::Exited => "exited",
        }
    }
}

/// What made a membership change, by `type`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum Cause {
    /// The event at this log offset.
    Event { offset: u64 },
    /// Time passed (a window slid, a date came closer).
    Schedule,
    /// A definition was created or changed and evaluated over existing profiles.
    Backfill,
    /// The profile was merged into the profile `into` and left its segments.
    Merge { into: String },
    /// The segment was deleted.
    Deleted,
}

/// One entry of the audience feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AudienceChange {
    /// Position in the feed: grows by one with every change, never reused.
    pub seq: u64,
    pub segment: String,
    /// The profile's id, `p_…`.
    pub profile: String,
    pub change: ChangeKind,
    /// RFC 3339, processing time: when the change was decided (fractional seconds as
    /// precise as the clock, none when whole).
    pub at: String,
    pub cause: Cause,
}

/// A page of the audience feed (`GET /api/v1/audience-changes`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeedPage {
    /// Entries and exits in the order they happened.
    pub data: Vec<AudienceChange>,
    /// The sequence number to pass as `after` to continue (the last one read, or `after`
    /// itself when there was nothing new).
    pub next_after: u64,
}

/// Whether existing profiles reflect the current definitions
/// (`GET /api/v1/audiences/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AudiencesStatus {
    /// Version of the definitions; grows with every change.
    pub definitions_version: u64,
    /// Live profiles.
    pub profiles: u64,
    pub backfill: Backfill,
}

/// The query of `GET /api/v1/audience-changes`: entries and exits after a sequence
/// number, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// `next_after` of the previous page; absent: from the start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<Limit>,
    /// Only this segment's changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::{List, Page};
    use serde::de::DeserializeOwned;
    use serde_json::{Value, json};

    /// `json` reads as `T` and writes back as the same JSON: the same fields, absent and
    /// `null` where they were.
    fn round_trip<T: Serialize + DeserializeOwned + std::fmt::Debug + PartialEq>(json: Value) -> T {
        let value: T = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(serde_json::to_value(&value).unwrap(), json);
        value
    }

    #[test]
    fn definitions_round_trip_and_refuse_unknown_fields() {
        let t: ComputedTraitDefinition = round_trip(json!({
            "name": "orders_30d", "description": "orders", "function": "count",
            "property": "revenue", "event": "Order Completed", "where": "properties.x > 1",
            "window": "30d"
        }));
        assert_eq!(t.condition.as_deref(), Some("properties.x > 1"));
        round_trip::<ComputedTraitDefinition>(json!({"expression": "count(event == \"a\")"}));
        let s: SegmentDefinition =
            round_trip(json!({"name": "big", "expression": "computed.orders_30d >= 2"}));
        assert_eq!(s.description, None);
        round_trip::<SegmentDefinition>(
            json!({"name": "big", "description": "d", "expression": "true"}),
        );
        // A null description reads as none.
        let s: SegmentDefinition =
            serde_json::from_value(json!({"expression": "true", "description": null})).unwrap();
        assert_eq!(s.description, None);
        for bad in [
            serde_json::from_value::<SegmentDefinition>(json!({"expression": "true", "nmae": "x"}))
                .unwrap_err(),
            serde_json::from_value::<SegmentDefinition>(json!({"name": "x"})).unwrap_err(),
        ] {
            assert!(bad.to_string().contains("field"), "{bad}");
        }
        let bad = serde_json::from_value::<ComputedTraitDefinition>(json!({"windw": "1d"}))
            .unwrap_err()
            .to_string();
        assert!(bad.starts_with("unknown field `windw`"), "{bad}");
    }

    #[test]
    fn views_round_trip() {
        round_trip::<List<ComputedTrait>>(json!({"data": [{
            "name": "orders_30d", "expression": "count(event == \"Order Completed\", within 30d)",
            "value_type": "number", "created_at": "2026-12-02T11:02:14.000Z",
            "updated_at": "2026-12-02T11:02:14.000Z"
        }, {
            "name": "n", "description": "d", "expression": "count()", "value_type": "number",
            "created_at": "2026-12-02T11:02:14.000Z", "updated_at": "2026-12-02T11:02:15.000Z"
        }]}));
        let s: Segment = round_trip(json!({
            "name": "big", "description": "d", "expression": "true", "size": 3,
            "created_at": "2026-12-02T11:02:14.000Z", "updated_at": "2026-12-02T11:02:14.000Z",
            "backfill": {"state": "done", "processed": 3, "total": 3,
                "started_at": "2026-12-02T11:02:14.000Z", "finished_at": "2026-12-02T11:02:15.000Z"}
        }));
        assert_eq!(s.backfill.state, BackfillState::Done);
        round_trip::<List<Segment>>(json!({"data": [{
            "name": "big", "expression": "true", "size": 0,
            "created_at": "2026-12-02T11:02:14.000Z", "updated_at": "2026-12-02T11:02:14.000Z",
            "backfill": {"state": "pending", "processed": 0, "total": 7}
        }]}));
        let status: AudiencesStatus = round_trip(json!({
            "definitions_version": 4, "profiles": 10,
            "backfill": {"state": "running", "processed": 2, "total": 10,
                "started_at": "2026-12-02T11:02:14.000Z"}
        }));
        assert_eq!(status.backfill.state, BackfillState::Running);
    }

    #[test]
    fn members_sizes_and_changes_round_trip() {
        let page: Page<Member> = round_trip(json!({"data": [
            {"profile": "p_1", "main_identifier": "user_id:42", "entered_at": "2026-12-02T11:02:14.000Z"},
            {"profile": "p_2", "main_identifier": null, "entered_at": "2026-12-02T11:02:14.000Z"}
        ], "next_cursor": "p_2"}));
        assert_eq!(page.data[1].main_identifier, None);
        round_trip::<Page<Member>>(json!({"data": [], "next_cursor": null}));
        round_trip::<List<SizePoint>>(
            json!({"data": [{"hour": "2026-12-02T11:00:00.000Z", "size": 5}]}),
        );
        let feed: FeedPage = round_trip(json!({"data": [
            {"seq": 1, "segment": "big", "profile": "p_1", "change": "entered",
             "at": "2026-12-02T11:02:14.123456789Z", "cause": {"type": "event", "offset": 3}},
            {"seq": 2, "segment": "big", "profile": "p_1", "change": "exited",
             "at": "2026-12-02T11:02:15Z", "cause": {"type": "merge", "into": "p_0"}},
            {"seq": 3, "segment": "big", "profile": "p_0", "change": "entered",
             "at": "2026-12-02T11:02:15Z", "cause": {"type": "backfill"}},
            {"seq": 4, "segment": "big", "profile": "p_0", "change": "exited",
             "at": "2026-12-02T11:02:15Z", "cause": {"type": "schedule"}},
            {"seq": 5, "segment": "big", "profile": "p_2", "change": "exited",
             "at": "2026-12-02T11:02:15Z", "cause": {"type": "deleted"}}
        ], "next_after": 5}));
        assert_eq!(feed.data[0].change, ChangeKind::Entered);
        for kind in [ChangeKind::Entered, ChangeKind::Exited] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        for state in [
            BackfillState::Pending,
            BackfillState::Running,
            BackfillState::Done,
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        }
        assert_eq!(feed.data[1].cause, Cause::Merge { into: "p_0".into() });
    }
}
