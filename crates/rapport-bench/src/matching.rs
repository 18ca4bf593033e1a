//! `rapport-bench matching`: measures probabilistic matching over live profiles, for speed
//! and for quality against a known truth.
//!
//! A deterministic population of people, each known by a user id, is written to the log;
//! then duplicates are planted: second profiles of random people that share no identifier
//! with the first (an anonymous id, at most an e-mail or phone the person's profile does not
//! have) and whose traits are a corrupted copy — typos, a missing field, a new address,
//! given name and surname swapped. The processor builds the profiles, the matching job runs
//! with the given options, the processor applies its merges, and the result is scored
//! against the planted truth: precision and recall of the automatic merges, and what landed
//! in the review queue. `--blocking` also counts the planted pairs each blocking pass
//! proposes; `--show-false` prints the evidence of false merges. Figures and findings are in
//! docs/benchmarks.md.

use crate::profiles::fill_log;
use anyhow::Context;
use clap::Args;
use rand::distributions::{Distribution, WeightedIndex};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rapport_core::identity::{IdentityRules, ProfileId};
use rapport_engine::EngineError;
use rapport_engine::audiences::store::{NS_PROFILE_LIST, PART_ALL};
use rapport_engine::identity::control::{NS_MATCH_OUTCOME, Outcome, PART_OUTCOME, StoredOutcome};
use rapport_engine::identity::matching::{self, MatchingOptions, MatchingStatus};
use rapport_engine::identity::review::{Decided, NS_REVIEW, PART_DECIDED, Review, Verdict};
use rapport_engine::processor::Processor;
use rapport_engine::profiles::Profiles;
use rapport_linkage::{Dataset, Schema};
use rapport_store::embedded::EmbeddedStore;
use rapport_store::{AppendItem, Appended, Store};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug, Args)]
pub struct BenchMatchingArgs {
    /// People in the population, each known by a user id.
    #[arg(long, default_value_t = 100_000)]
    people: usize,
    /// Duplicates planted: second profiles of distinct random people, with no identifier
    /// in common and corrupted traits [default: 5 % of people].
    #[arg(long)]
    duplicates: Option<usize>,
    /// Share of people who live with a relative: same address and (mostly) surname, their
    /// own given name and birthday.
    #[arg(long, default_value_t = 0.15)]
    households: f64,
    /// Matching options as JSON (fields, thresholds, prior, estimation; see
    /// docs/identity-matching.md) [default: the job's defaults].
    #[arg(long)]
    options: Option<PathBuf>,
    /// Also run the blocking passes alone on the live profiles, to report the pairs each
    /// proposes and how many planted duplicates each finds.
    #[arg(long)]
    blocking: bool,
    /// Print the evidence of this many automatic merges that join two different people.
    #[arg(long, default_value_t = 0)]
    show_false: usize,
    /// Seed of the population and of the duplicates.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

// ---------------------------------------------------------------------------------------
// The population: pure, deterministic for a seed.
// ---------------------------------------------------------------------------------------

const GIVEN_HEADS: [&str; 44] = [
    "al", "an", "ar", "bel", "bri", "ca", "cla", "dan", "del", "ed", "el", "em", "fe", "flo", "ga",
    "ge", "ha", "hel", "is", "ja", "jo", "ka", "la", "le", "li", "lu", "ma", "mar", "mi", "na",
    "ni", "ol", "pe", "ro", "ru", "sa", "se", "so", "ta", "the", "vi", "wil", "ya", "za",
];
const GIVEN_TAILS: [&str; 18] = [
    "a", "ana", "bert", "da", "den", "ie", "iel", "ine", "is", "lia", "mon", "na", "o", "ra",
    "rick", "ton", "vin", "y",
];
const SURNAME_HEADS: [&str; 50] = [
    "ash", "bar", "black", "brad", "brook", "carl", "chap", "cole", "craw", "dal", "dun", "ed",
    "fair", "fen", "gold", "green", "hal", "har", "hol", "kent", "kings", "lang", "lock", "mar",
    "mid", "mor", "new", "nor", "oak", "pen", "ral", "red", "ros", "sand", "shel", "stan", "stock",
    "thorn", "wal", "war", "west", "whit", "wind", "wood", "york", "ald", "bran", "crom", "dray",
    "elm",
];
const SURNAME_TAILS: [&str; 24] = [
    "by", "den", "er", "field", "ford", "ham", "hill", "ington", "kins", "ley", "man", "more",
    "ridge", "s", "shaw", "son", "ston", "ton", "well", "wick", "win", "wood", "worth", "cliffe",
];
const STREET_WORDS: [&str; 40] = [
    "acacia", "alder", "beech", "birch", "castle", "cedar", "chapel", "church", "elm", "grove",
    "hawthorn", "heath", "high", "king's", "lime", "manor", "market", "meadow", "mill", "oak",
    "orchard", "park", "queen's", "rose", "school", "spring", "station", "vicarage", "victoria",
    "willow", "windmill", "bridge", "brook", "cherry", "forge", "garden", "hill", "holly",
    "laurel", "maple",
];
/// Street types and their common abbreviation.
const STREET_TYPES: [(&str, &str); 12] = [
    ("Road", "Rd"),
    ("Street", "St"),
    ("Lane", "Ln"),
    ("Avenue", "Ave"),
    ("Close", "Cl"),
    ("Drive", "Dr"),
    ("Way", "Way"),
    ("Gardens", "Gdns"),
    ("Crescent", "Cres"),
    ("Place", "Pl"),
    ("Terrace", "Ter"),
    ("Grove", "Gr"),
];
const CITY_TAILS: [&str; 16] = [
    "bury", "by", "chester", "don", "field", "ford", "ham", "ley", "mouth", "pool", "stead", "ton",
    "wich", "worth", "minster", "caster",
];
const CITIES: usize = 150;
const EMAIL_DOMAINS: [&str; 4] = ["example.com", "example.org", "example.net", "mail.example"];

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Distinct names from syllable combinations, in a fixed shuffled order (so that frequency
/// ranks do not follow the alphabet).
fn combine(heads: &[&str], tails: &[&str], seed: u64) -> Vec<String> {
    let mut names: Vec<String> = heads
        .iter()
        .flat_map(|h| tails.iter().map(move |t| capitalise(&format!("{h}{t}"))))
        .collect();
    names.sort();
    names.dedup();
    let mut rng = SmallRng::seed_from_u64(seed);
    for i in (1..names.len()).rev() {
        names.swap(i, rng.gen_range(0..=i));
    }
    names
}

/// Zipf-like weights `1 / rank^s`: a few common values and a long tail, as with real names.
fn zipf(n: usize, s: f64) -> WeightedIndex<f64> {
    WeightedIndex::new((1..=n).map(|r| 1.0 / (r as f64).powf(s))).expect("positive weights")
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Name lists, frequencies and places the population is drawn from.
struct Lexicon {
    given: Vec<String>,
    given_freq: WeightedIndex<f64>,
    surnames: Vec<String>,
    surname_freq: WeightedIndex<f64>,
    streets: Vec<String>,
    cities: Vec<String>,
    city_freq: WeightedIndex<f64>,
    /// Postal districts per city, more for larger cities.
    districts: Vec<u64>,
}

impl Lexicon {
    fn new() -> Lexicon {
        let given = combine(&GIVEN_HEADS, &GIVEN_TAILS, 1);
        let mut surnames = combine(&SURNAME_HEADS, &SURNAME_TAILS, 2);
        surnames.extend(combine(&GIVEN_HEADS, &SURNAME_TAILS, 4));
        surnames.sort();
        surnames.dedup();
        let mut rng = SmallRng::seed_from_u64(5);
        for i in (1..surnames.len()).rev() {
            surnames.swap(i, rng.gen_range(0..=i));
        }
        // Streets are named after words and after the first few hundred surnames.
        let bases: Vec<String> = STREET_WORDS
            .iter()
            .map(|w| capitalise(w))
            .chain(surnames.iter().take(300).cloned())
            .collect();
        let streets = bases
            .iter()
            .flat_map(|b| STREET_TYPES.iter().map(move |(t, _)| format!("{b} {t}")))
            .collect();
        let cities: Vec<String> = combine(&SURNAME_HEADS, &CITY_TAILS, 3)
            .into_iter()
            .take(CITIES)
            .collect();
        let weights: Vec<f64> = (1..=CITIES).map(|r| 1.0 / r as f64).collect();
        let total: f64 = weights.iter().sum();
        let districts = weights
            .iter()
            .map(|w| ((w / total) * 400.0).round().max(2.0) as u64)
            .collect();
        Lexicon {
            given_freq: zipf(given.len(), 0.6),
            given,
            surname_freq: zipf(surnames.len(), 0.5),
            surnames,
            streets,
            city_freq: zipf(CITIES, 1.0),
            cities,
            districts,
        }
    }

    fn given(&self, rng: &mut SmallRng) -> String {
        self.given[self.given_freq.sample(rng)].clone()
    }

    fn surname(&self, rng: &mut SmallRng) -> String {
        self.surnames[self.surname_freq.sample(rng)].clone()
    }

    /// A street address: house number, street, city and the street's postcode (one per
    /// street and city, as a UK postcode unit).
    fn address(&self, rng: &mut SmallRng, city: Option<usize>) -> (String, String, String) {
        let city = city.unwrap_or_else(|| self.city_freq.sample(rng));
        let street = rng.gen_range(0..self.streets.len());
        let h = mix(((city as u64) << 32) | street as u64);
        let area: String = [b'A' + (city / 26) as u8, b'A' + (city % 26) as u8]
            .iter()
            .map(|&b| b as char)
            .collect();
        let unit = |k: u64| (b'A' + ((h >> k) % 26) as u8) as char;
        let postcode = format!(
            "{area}{} {}{}{}",
            1 + h % self.districts[city],
            (h >> 8) % 10,
            unit(16),
            unit(24)
        );
        let number = 1 + rng.gen_range(0..150);
        (
            format!("{number} {}", self.streets[street]),
            self.cities[city].clone(),
            postcode,
        )
    }
}

fn birthday(rng: &mut SmallRng, year: i32) -> String {
    let month = rng.gen_range(1..=12);
    let days = match month {
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    format!("{year}-{month:02}-{:02}", rng.gen_range(1..=days))
}

/// What a profile knows about a person, as its traits.
#[derive(Debug, Clone, PartialEq)]
struct Person {
    given: String,
    surname: String,
    street: Option<String>,
    city: Option<String>,
    postcode: Option<String>,
    birthday: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

impl Person {
    fn traits(&self) -> Value {
        let mut t = json!({"firstName": self.given, "lastName": self.surname});
        let mut address = serde_json::Map::new();
        for (k, v) in [
            ("street", &self.street),
            ("city", &self.city),
            ("postalCode", &self.postcode),
        ] {
            if let Some(v) = v {
                address.insert(k.into(), v.clone().into());
            }
        }
        if !address.is_empty() {
            t["address"] = address.into();
        }
        for (k, v) in [
            ("birthday", &self.birthday),
            ("email", &self.email),
            ("phone", &self.phone),
        ] {
            if let Some(v) = v {
                t[k] = v.clone().into();
            }
        }
        t
    }
}

/// An e-mail address: from the names (`ann.lee12`, `alee12`, `lee.ann12`) or a word
/// (`willow12`), then `tag`, which makes it unique (people use their index, duplicates
/// `_` and theirs, so that a duplicate never has somebody's address).
fn email(given: &str, surname: &str, tag: &str, rng: &mut SmallRng) -> String {
    let (g, s) = (given.to_lowercase(), surname.to_lowercase());
    let local = match rng.gen_range(0..10) {
        0..=3 => format!("{g}.{s}"),
        4..=6 => format!("{}{s}", &g[..1]),
        7 => format!("{s}.{g}"),
        _ => STREET_WORDS[rng.gen_range(0..STREET_WORDS.len())].replace('\'', ""),
    };
    let domain = EMAIL_DOMAINS[rng.gen_range(0..EMAIL_DOMAINS.len())];
    format!("{local}{tag}@{domain}")
}

/// People in a household at most.
const MAX_HOUSEHOLD: u8 = 4;

/// The people: 85 % have an e-mail, half a phone, 90 % a birthday; a `households` share
/// live with an earlier person (same address, same surname nine times in ten, their own
/// given name and a birthday of a partner or a child), in households of at most
/// [`MAX_HOUSEHOLD`].
fn population(lex: &Lexicon, n: usize, households: f64, seed: u64) -> Vec<Person> {
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut people: Vec<Person> = Vec::with_capacity(n);
    let mut years = Vec::with_capacity(n);
    // The first member of each person's household, and each household's size.
    let mut head = Vec::with_capacity(n);
    let mut size = vec![0u8; n];
    for i in 0..n {
        let given = lex.given(&mut rng);
        let relative = (i > 0 && rng.gen_bool(households))
            .then(|| rng.gen_range(0..i))
            .filter(|&k| size[head[k]] < MAX_HOUSEHOLD);
        head.push(relative.map_or(i, |k| head[k]));
        size[head[i]] += 1;
        let (surname, (street, city, postcode), year) = match relative {
            Some(k) => {
                let r = &people[k];
                let surname = if rng.gen_bool(0.9) {
                    r.surname.clone()
                } else {
                    lex.surname(&mut rng)
                };
                let address = (
                    r.street.clone().unwrap_or_default(),
                    r.city.clone().unwrap_or_default(),
                    r.postcode.clone().unwrap_or_default(),
                );
                // A partner, or a child (a parent when the child would be too young).
                let year: i32 = if rng.gen_bool(0.5) {
                    years[k] + rng.gen_range(-5..=5)
                } else {
                    let gap = rng.gen_range(20..=35);
                    if years[k] + gap <= 2006 {
                        years[k] + gap
                    } else {
                        years[k] - gap
                    }
                };
                (surname, address, year.min(2006))
            }
            None => (
                lex.surname(&mut rng),
                lex.address(&mut rng, None),
                rng.gen_range(1940..=2006),
            ),
        };
        let email = rng
            .gen_bool(0.85)
            .then(|| email(&given, &surname, &i.to_string(), &mut rng));
        // 7919 is prime, so i ↦ 7919·i + 13 mod 10⁶ gives every person their own number.
        let phone = rng
            .gen_bool(0.5)
            .then(|| format!("+44 7700 {:06}", (i as u64 * 7919 + 13) % 1_000_000));
        let birthday = rng.gen_bool(0.9).then(|| birthday(&mut rng, year));
        years.push(year);
        people.push(Person {
            given,
            surname,
            street: Some(street),
            city: Some(city),
            postcode: Some(postcode),
            birthday,
            email,
            phone,
        });
    }
    people
}

/// One typo: a letter substituted, two neighbouring letters transposed or a letter
/// deleted, at a letter (digits and spaces are left alone). Strings of fewer than three
/// letters are returned unchanged.
fn typo(s: &str, rng: &mut SmallRng) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    let letters: Vec<usize> = (0..chars.len())
        .filter(|&i| chars[i].is_alphabetic())
        .collect();
    if letters.len() < 3 {
        return s.to_owned();
    }
    let at = letters[rng.gen_range(0..letters.len())];
    match rng.gen_range(0..3) {
        0 => {
            let was = chars[at].to_ascii_lowercase();
            let mut c = was;
            while c == was {
                c = (b'a' + rng.gen_range(0..26u8)) as char;
            }
            chars[at] = if chars[at].is_uppercase() {
                c.to_ascii_uppercase()
            } else {
                c
            };
        }
        1 => {
            // With the next letter, or the previous one at the end of a word.
            let other = if at + 1 < chars.len() && chars[at + 1].is_alphabetic() {
                at + 1
            } else if at > 0 && chars[at - 1].is_alphabetic() {
                at - 1
            } else {
                return typo(s, rng);
            };
            if chars[at] == chars[other] {
                chars.remove(at);
            } else {
                chars.swap(at, other);
            }
        }
        _ => {
            chars.remove(at);
        }
    }
    chars.into_iter().collect()
}

/// What was done to a duplicate; a duplicate may show several.
const KINDS: [&str; 11] = [
    "exact copy",
    "given name typo",
    "surname typo",
    "names swapped",
    "moved house",
    "street typo",
    "street abbreviated",
    "postcode typo",
    "birthday typo",
    "field missing",
    "other e-mail",
];

/// A duplicate of `p`: a second profile the same person left elsewhere. Never the
/// person's e-mail or phone (they would merge deterministically): none, or another one.
/// Names have a typo one time in five, are swapped one time in twenty; one person in
/// eight has moved house, otherwise the street has a typo or its type abbreviated now and
/// then; one duplicate in five misses one of street, city, postcode and birthday.
/// Returns the duplicate and the indexes in [`KINDS`] of what was done.
fn corrupt(p: &Person, lex: &Lexicon, j: usize, rng: &mut SmallRng) -> (Person, Vec<usize>) {
    let mut d = p.clone();
    let mut kinds = Vec::new();
    if rng.gen_bool(0.2) {
        d.given = typo(&d.given, rng);
        kinds.push(1);
    }
    if rng.gen_bool(0.2) {
        d.surname = typo(&d.surname, rng);
        kinds.push(2);
    }
    if rng.gen_bool(0.05) {
        std::mem::swap(&mut d.given, &mut d.surname);
        kinds.push(3);
    }
    if rng.gen_bool(0.125) {
        // Half of the moves are within the same town.
        let city = rng
            .gen_bool(0.5)
            .then(|| {
                d.city
                    .as_ref()
                    .and_then(|c| lex.cities.iter().position(|x| x == c))
            })
            .flatten();
        let (street, city, postcode) = lex.address(rng, city);
        (d.street, d.city, d.postcode) = (Some(street), Some(city), Some(postcode));
        kinds.push(4);
    } else {
        if let Some(street) = &d.street {
            if rng.gen_bool(0.15) {
                d.street = Some(typo(street, rng));
                kinds.push(5);
            } else if rng.gen_bool(0.1) {
                let abbreviated = STREET_TYPES.iter().find_map(|(long, short)| {
                    (long != short)
                        .then(|| street.strip_suffix(long).map(|s| format!("{s}{short}")))
                        .flatten()
                });
                if let Some(a) = abbreviated {
                    d.street = Some(a);
                    kinds.push(6);
                }
            }
        }
        if let Some(pc) = &d.postcode
            && rng.gen_bool(0.05)
        {
            // One character of the unit replaced.
            let mut chars: Vec<char> = pc.chars().collect();
            let at = chars.len() - 1 - rng.gen_range(0..2);
            let was = chars[at];
            while chars[at] == was {
                chars[at] = (b'A' + rng.gen_range(0..26u8)) as char;
            }
            d.postcode = Some(chars.into_iter().collect());
            kinds.push(7);
        }
    }
    if let Some(b) = &d.birthday
        && rng.gen_bool(0.05)
    {
        // A digit of the day mistyped, or day and month swapped when both could be months.
        let (ymd, day) = (b.rsplit_once('-').expect("yyyy-mm-dd"), b[8..].to_owned());
        let month = &b[5..7];
        let day_num: u32 = day.parse().unwrap_or(0);
        d.birthday = Some(if day_num <= 12 && day != month && rng.gen_bool(0.5) {
            format!("{}-{day}-{month}", &b[..4])
        } else {
            let mut digits: Vec<char> = ymd.1.chars().collect();
            let at = rng.gen_range(0..2);
            let was = digits[at];
            while digits[at] == was {
                digits[at] = (b'0' + rng.gen_range(0..10u8)) as char;
            }
            format!("{}-{}", ymd.0, digits.into_iter().collect::<String>())
        });
        kinds.push(8);
    }
    if rng.gen_bool(0.2) {
        match rng.gen_range(0..4) {
            0 => d.street = None,
            1 => d.city = None,
            2 => d.postcode = None,
            _ => d.birthday = None,
        }
        kinds.push(9);
    }
    d.email = rng.gen_bool(0.5).then(|| {
        kinds.push(10);
        email(&d.given, &d.surname, &format!("_{j}"), rng)
    });
    d.phone = rng
        .gen_bool(0.15)
        .then(|| format!("+44 7911 {:06}", (j as u64 * 7919 + 13) % 1_000_000));
    if kinds.is_empty() || kinds == [10] {
        kinds.insert(0, 0);
    }
    (d, kinds)
}

// ---------------------------------------------------------------------------------------
// The run.
// ---------------------------------------------------------------------------------------

#[derive(Debug, Default, serde::Serialize)]
struct KindFigures {
    duplicates: u64,
    merged: u64,
    review: u64,
}

/// What merging every stored pair at or above `weight` would give (pairs below the review
/// threshold are not stored, so only weights from there on can be tried).
#[derive(Debug, serde::Serialize)]
struct WeightFigures {
    weight: f64,
    pairs: u64,
    precision: f64,
    recall: f64,
}

/// One blocking pass over the live profiles: pairs it proposes and planted duplicates
/// among them.
#[derive(Debug, serde::Serialize)]
struct RuleFigures {
    rule: String,
    pairs: u64,
    skipped_blocks: u64,
    duplicates_found: u64,
    /// Planted duplicates no other pass proposes.
    duplicates_found_only: u64,
}

#[derive(Debug, serde::Serialize)]
struct BlockingFigures {
    seconds: f64,
    rules: Vec<RuleFigures>,
    candidate_pairs: u64,
    /// Planted duplicates proposed by at least one pass (pair completeness).
    duplicates_found: u64,
}

#[derive(Debug, serde::Serialize)]
struct Report {
    people: usize,
    duplicates: usize,
    household_share: f64,
    /// Distinct values in the population, and the share of the most common.
    given_names: usize,
    top_given_name_share: f64,
    surnames: usize,
    top_surname_share: f64,
    streets: usize,
    cities: usize,
    largest_city_share: f64,
    options: MatchingOptions,
    write_seconds: f64,
    process_seconds: f64,
    profiles_total: u64,
    profiles_read: u64,
    records: u64,
    candidate_pairs: u64,
    matches: u64,
    review: u64,
    match_weight: Option<f64>,
    review_weight: Option<f64>,
    matching_seconds: f64,
    reading_seconds: Option<f64>,
    linking_seconds: Option<f64>,
    deciding_seconds: Option<f64>,
    profiles_per_second: f64,
    apply_seconds: f64,
    merges_applied: u64,
    merges_refused: u64,
    merges_already_one: u64,
    /// Automatic pairs that join a person's two profiles.
    true_matches: u64,
    false_matches: u64,
    /// False automatic pairs of two people's own profiles (the identity rules refuse
    /// them when both have a user id).
    false_matches_two_people: u64,
    /// False automatic pairs that join a duplicate to somebody else.
    false_matches_wrong_person: u64,
    /// False automatic pairs whose street and postcode agree exactly.
    false_matches_same_address: u64,
    precision: f64,
    /// Planted duplicates merged automatically into their person's profile.
    recall: f64,
    /// Planted duplicates waiting in review.
    duplicates_in_review: u64,
    /// Share of planted duplicates waiting in review.
    review_share: f64,
    /// Review pairs that are not one person.
    false_review_pairs: u64,
    /// After the merges: duplicates resolving to their person's profile.
    resolved_to_person: u64,
    /// After the merges: duplicates resolving to somebody else's profile.
    resolved_to_other: u64,
    by_kind: BTreeMap<&'static str, KindFigures>,
    by_weight: Vec<WeightFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blocking: Option<BlockingFigures>,
}

/// Whose a profile was before matching.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Person(usize),
    Duplicate(usize),
}

/// Every value of a state partition, decoded, read in pages.
fn scan_all<T: serde::de::DeserializeOwned>(
    store: &dyn Store,
    namespace: &str,
    part: &str,
) -> anyhow::Result<Vec<T>> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.state_scan_range(namespace, part, after.as_deref(), 5_000)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (_, v) in &page {
            out.push(serde_json::from_slice(v)?);
        }
        if page.len() < 5_000 {
            break;
        }
    }
    Ok(out)
}

/// Runs the matching job while watching its stored progress (every 2 ms), to time its
/// phases: each save records the elapsed time, and the first save of a phase is the end of
/// the one before.
fn timed_matching(
    store: &dyn Store,
    options: &MatchingOptions,
) -> anyhow::Result<(MatchingStatus, f64, BTreeMap<String, u64>)> {
    let done = AtomicBool::new(false);
    let append = |items: Vec<AppendItem>| -> Result<Vec<Appended>, EngineError> {
        Ok(store.append(&items, chrono::Utc::now().timestamp_millis(), 86_400_000)?)
    };
    let (status, seconds, phases) = std::thread::scope(|scope| {
        let watcher = scope.spawn(|| {
            let mut first_seen: BTreeMap<String, u64> = BTreeMap::new();
            while !done.load(Ordering::Relaxed) {
                if let Ok(Some(s)) = matching::last_status(store) {
                    first_seen.entry(s.phase).or_insert(s.elapsed_ms);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            first_seen
        });
        let started = Instant::now();
        let status = matching::run(store, &append, options, chrono::Utc::now());
        let seconds = started.elapsed().as_secs_f64();
        done.store(true, Ordering::Relaxed);
        let phases = watcher.join().expect("the watcher does not panic");
        (status, seconds, phases)
    });
    Ok((status?, seconds, phases))
}

/// Runs the job's blocking passes alone over the live profiles, read as the job reads
/// them, and counts for each pass the planted pairs (person, duplicate) it proposes.
fn blocking_figures(
    store: &dyn Store,
    options: &MatchingOptions,
    truth: &[(ProfileId, ProfileId)],
) -> anyhow::Result<BlockingFigures> {
    let started = Instant::now();
    let profiles = Profiles { store };
    let mut data = Dataset::new(Schema::new(matching::FIELDS));
    let mut row: HashMap<ProfileId, u32> = HashMap::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = store.state_scan_range(NS_PROFILE_LIST, PART_ALL, after.as_deref(), 10_000)?;
        let Some((last, _)) = page.last() else { break };
        after = Some(last.clone());
        for (key, _) in &page {
            let id = ProfileId::new(String::from_utf8_lossy(key).into_owned());
            let Some(record) = profiles.record(&id)? else {
                continue;
            };
            let values = matching::linkage_values(&record, options);
            if record.merged_into.is_none() && values.iter().flatten().count() >= 2 {
                row.insert(id.clone(), data.len() as u32);
                data.push(id.as_str(), &values)?;
            }
        }
        if page.len() < 10_000 {
            break;
        }
    }
    let spec = options.spec();
    let planted: Vec<(u32, u32)> = truth
        .iter()
        .filter_map(|(a, b)| {
            let (a, b) = (*row.get(a)?, *row.get(b)?);
            Some((a.min(b), a.max(b)))
        })
        .collect();
    let mut rules = Vec::new();
    // For each planted pair, the passes that propose it.
    let mut found_by: Vec<Vec<usize>> = vec![Vec::new(); planted.len()];
    for (r, rule) in spec.blocking.iter().enumerate() {
        let (pairs, stats) = rapport_linkage::blocking::dedupe_pairs(
            &data,
            std::slice::from_ref(rule),
            &spec.blocking_options,
        )?;
        for (k, p) in planted.iter().enumerate() {
            if pairs.binary_search(p).is_ok() {
                found_by[k].push(r);
            }
        }
        rules.push(RuleFigures {
            rule: rule.name.clone(),
            pairs: pairs.len() as u64,
            skipped_blocks: stats.skipped_blocks as u64,
            duplicates_found: found_by.iter().filter(|f| f.contains(&r)).count() as u64,
            duplicates_found_only: 0,
        });
    }
    for (r, figures) in rules.iter_mut().enumerate() {
        figures.duplicates_found_only = found_by.iter().filter(|f| f[..] == [r]).count() as u64;
    }
    let (pairs, _) =
        rapport_linkage::blocking::dedupe_pairs(&data, &spec.blocking, &spec.blocking_options)?;
    Ok(BlockingFigures {
        seconds: started.elapsed().as_secs_f64(),
        rules,
        candidate_pairs: pairs.len() as u64,
        duplicates_found: planted
            .iter()
            .filter(|p| pairs.binary_search(p).is_ok())
            .count() as u64,
    })
}

pub fn run(args: BenchMatchingArgs) -> anyhow::Result<()> {
    let options: MatchingOptions = match &args.options {
        Some(path) => serde_json::from_slice(
            &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("{} is not valid matching options", path.display()))?,
        None => MatchingOptions::default(),
    };
    options.validate()?;
    let n = args.people;
    let d = args.duplicates.unwrap_or(n / 20);
    anyhow::ensure!(d <= n, "at most one duplicate per person");

    eprintln!("generating {n} people and {d} duplicates…");
    let lex = Lexicon::new();
    let people = population(&lex, n, args.households, args.seed);
    let variety = |f: fn(&Person) -> Option<&str>| {
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for v in people.iter().filter_map(f) {
            *counts.entry(v).or_default() += 1;
        }
        let top = counts.values().max().copied().unwrap_or(0);
        (counts.len(), top as f64 / n.max(1) as f64)
    };
    let (given_names, top_given_name_share) = variety(|p| Some(&p.given));
    let (surnames, top_surname_share) = variety(|p| Some(&p.surname));
    let (streets, _) = variety(|p| p.street.as_deref());
    let (cities, largest_city_share) = variety(|p| p.city.as_deref());
    let mut rng = SmallRng::seed_from_u64(args.seed ^ 0xd0b1e);
    // Distinct people: a partial shuffle.
    let mut order: Vec<usize> = (0..n).collect();
    let mut duplicates = Vec::with_capacity(d);
    for j in 0..d {
        let k = rng.gen_range(j..n);
        order.swap(j, k);
        let person = order[j];
        let (dup, kinds) = corrupt(&people[person], &lex, j, &mut rng);
        duplicates.push((person, dup, kinds));
    }

    let temp = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(&temp.path().join("data"))?);
    let started = Instant::now();
    let messages = people
        .iter()
        .enumerate()
        .map(|(i, p)| json!({"type": "identify", "userId": format!("user-{i}"), "traits": p.traits()}))
        .chain(duplicates.iter().enumerate().map(|(j, (_, p, _))| {
            json!({"type": "identify", "anonymousId": format!("dup-{j}"), "traits": p.traits()})
        }));
    fill_log(store.as_ref(), messages)?;
    let write_seconds = started.elapsed().as_secs_f64();
    eprintln!("written in {write_seconds:.1} s; processing…");
    let started = Instant::now();
    Processor::new(store.clone(), IdentityRules::default()).run_to_end()?;
    let process_seconds = started.elapsed().as_secs_f64();

    // Who owns which profile before matching.
    let profiles = Profiles {
        store: store.as_ref(),
    };
    let mut owner: HashMap<String, Owner> = HashMap::with_capacity(n + d);
    let mut person_profile = Vec::with_capacity(n);
    for i in 0..n {
        let id = profiles.resolve(&format!("user_id:user-{i}"))?.id;
        owner.insert(id.as_str().to_owned(), Owner::Person(i));
        person_profile.push(id);
    }
    let mut dup_profile = Vec::with_capacity(d);
    for j in 0..d {
        let id = profiles.resolve(&format!("anonymous_id:dup-{j}"))?.id;
        dup_profile.push(id.clone());
        anyhow::ensure!(
            owner
                .insert(id.as_str().to_owned(), Owner::Duplicate(j))
                .is_none(),
            "duplicate {j} shares a profile with somebody"
        );
    }
    let same_person = |a: &str, b: &str| match (owner.get(a), owner.get(b)) {
        (Some(&Owner::Person(i)), Some(&Owner::Duplicate(j)))
        | (Some(&Owner::Duplicate(j)), Some(&Owner::Person(i))) => duplicates[j].0 == i,
        _ => false,
    };
    let duplicate_of_pair = |a: &str, b: &str| {
        [a, b].iter().find_map(|x| match owner.get(*x) {
            Some(&Owner::Duplicate(j)) => Some(j),
            _ => None,
        })
    };

    eprintln!("processed in {process_seconds:.1} s; matching…");
    let (status, matching_seconds, phases) = timed_matching(store.as_ref(), &options)?;

    // Automatic decisions and the review queue, against the truth.
    let decided: Vec<Decided> = scan_all(store.as_ref(), NS_REVIEW, PART_DECIDED)?;
    let mut merged_dups = vec![false; d];
    let (mut true_matches, mut false_matches) = (0u64, 0u64);
    let (mut two_people, mut wrong_person, mut same_address) = (0u64, 0u64, 0u64);
    let mut shown = 0;
    // Every stored pair: its weight and, if it is one person, which duplicate.
    let mut scored: Vec<(f64, Option<usize>)> = Vec::new();
    for c in decided
        .iter()
        .filter(|x| x.decision == Verdict::Automatic)
        .map(|x| &x.candidate)
    {
        if same_person(c.left.as_str(), c.right.as_str()) {
            true_matches += 1;
            let j = duplicate_of_pair(c.left.as_str(), c.right.as_str()).expect("a duplicate");
            merged_dups[j] = true;
            scored.push((c.score, Some(j)));
        } else {
            false_matches += 1;
            scored.push((c.score, None));
            match duplicate_of_pair(c.left.as_str(), c.right.as_str()) {
                Some(_) => wrong_person += 1,
                None => two_people += 1,
            }
            let exact = |field: &str| {
                c.fields
                    .iter()
                    .any(|f| f.field == field && f.level_label == "exact")
            };
            same_address += u64::from(exact("street") && exact("postcode"));
            if shown < args.show_false {
                shown += 1;
                eprintln!(
                    "false match {} (weight {:.1}, posterior {:.6}):",
                    c.pair, c.score, c.probability
                );
                for f in &c.fields {
                    eprintln!(
                        "  {:<14} {:<28} {:<28} {:<20} {:>6.1}",
                        f.field,
                        f.left_value.as_deref().unwrap_or("-"),
                        f.right_value.as_deref().unwrap_or("-"),
                        f.level_label,
                        f.weight
                    );
                }
            }
        }
    }
    let mut review_dups = vec![false; d];
    let mut false_review_pairs = 0u64;
    let review = Review {
        store: store.as_ref(),
    };
    let mut cursor: Option<String> = None;
    loop {
        let (page, next) = review.pending_page(cursor.as_deref(), 1_000)?;
        for c in &page {
            if same_person(c.left.as_str(), c.right.as_str()) {
                let j = duplicate_of_pair(c.left.as_str(), c.right.as_str()).expect("a duplicate");
                review_dups[j] = true;
                scored.push((c.score, Some(j)));
            } else {
                false_review_pairs += 1;
                scored.push((c.score, None));
            }
        }
        match next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }

    let blocking = if args.blocking {
        eprintln!("matched in {matching_seconds:.1} s; blocking alone…");
        let truth: Vec<(ProfileId, ProfileId)> = duplicates
            .iter()
            .enumerate()
            .map(|(j, (i, _, _))| (person_profile[*i].clone(), dup_profile[j].clone()))
            .collect();
        Some(blocking_figures(store.as_ref(), &options, &truth)?)
    } else {
        None
    };
    eprintln!("matched in {matching_seconds:.1} s; applying the merges…");
    let started = Instant::now();
    Processor::new(store.clone(), IdentityRules::default()).run_to_end()?;
    let apply_seconds = started.elapsed().as_secs_f64();
    let outcomes: Vec<StoredOutcome> = scan_all(store.as_ref(), NS_MATCH_OUTCOME, PART_OUTCOME)?;
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(&o.outcome)).count() as u64;

    // What a user of the API now sees.
    let (mut resolved_to_person, mut resolved_to_other) = (0u64, 0u64);
    for (j, (i, _, _)) in duplicates.iter().enumerate() {
        let id = profiles.resolve(&format!("anonymous_id:dup-{j}"))?.id;
        if id
            == profiles
                .live(&person_profile[*i])?
                .context("a live person")?
                .id
        {
            resolved_to_person += 1;
        } else if !matches!(owner.get(id.as_str()), Some(Owner::Duplicate(_))) {
            resolved_to_other += 1;
        }
    }

    let mut by_kind: BTreeMap<&'static str, KindFigures> = BTreeMap::new();
    for (j, (_, _, kinds)) in duplicates.iter().enumerate() {
        for &k in kinds {
            let f = by_kind.entry(KINDS[k]).or_default();
            f.duplicates += 1;
            f.merged += u64::from(merged_dups[j]);
            f.review += u64::from(review_dups[j]);
        }
    }
    let phase = |name: &str| phases.get(name).map(|&ms| ms as f64 / 1000.0);
    let (linking, deciding) = (phase("linking"), phase("deciding"));
    let recall_count = merged_dups.iter().filter(|&&m| m).count() as u64;
    let in_review = review_dups.iter().filter(|&&m| m).count() as u64;
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let mut weights: Vec<f64> = status
        .thresholds
        .iter()
        .flat_map(|t| [t.lower, t.upper])
        .chain([20.0, 25.0, 30.0, 35.0, 40.0])
        .collect();
    weights.sort_by(f64::total_cmp);
    weights.dedup();
    let by_weight = weights
        .into_iter()
        .filter(|&w| status.thresholds.is_none_or(|t| w >= t.lower))
        .map(|weight| {
            let above: Vec<Option<usize>> = scored
                .iter()
                .filter(|(s, _)| *s >= weight)
                .map(|&(_, j)| j)
                .collect();
            let found: std::collections::HashSet<usize> = above.iter().flatten().copied().collect();
            let right = above.iter().filter(|j| j.is_some()).count() as u64;
            WeightFigures {
                weight,
                pairs: above.len() as u64,
                precision: ratio(right, above.len() as u64),
                recall: ratio(found.len() as u64, d as u64),
            }
        })
        .collect();
    let report = Report {
        people: n,
        duplicates: d,
        household_share: args.households,
        given_names,
        top_given_name_share,
        surnames,
        top_surname_share,
        streets,
        cities,
        largest_city_share,
        options,
        write_seconds,
        process_seconds,
        profiles_total: status.profiles_total,
        profiles_read: status.profiles_read,
        records: status.records,
        candidate_pairs: status.candidate_pairs,
        matches: status.matches,
        review: status.review,
        match_weight: status.thresholds.map(|t| t.upper),
        review_weight: status.thresholds.map(|t| t.lower),
        matching_seconds,
        reading_seconds: linking,
        linking_seconds: linking.zip(deciding).map(|(l, dd)| dd - l),
        deciding_seconds: deciding.map(|dd| matching_seconds - dd),
        profiles_per_second: status.profiles_read as f64 / matching_seconds,
        apply_seconds,
        merges_applied: count(|o| matches!(o, Outcome::Merged { .. })),
        merges_refused: count(|o| matches!(o, Outcome::Refused { .. })),
        merges_already_one: count(|o| matches!(o, Outcome::AlreadyOne { .. })),
        true_matches,
        false_matches,
        false_matches_two_people: two_people,
        false_matches_wrong_person: wrong_person,
        false_matches_same_address: same_address,
        precision: ratio(true_matches, true_matches + false_matches),
        recall: ratio(recall_count, d as u64),
        duplicates_in_review: in_review,
        review_share: ratio(in_review, d as u64),
        false_review_pairs,
        resolved_to_person,
        resolved_to_other,
        by_kind,
        by_weight,
        blocking,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(())
}

fn print_report(r: &Report) {
    let secs = |s: Option<f64>| s.map_or("?".into(), |s| format!("{s:.1} s"));
    println!(
        "population  {} people + {} duplicates ({:.0} % in households): written in {:.1} s, processed in {:.1} s",
        r.people,
        r.duplicates,
        r.household_share * 100.0,
        r.write_seconds,
        r.process_seconds
    );
    println!(
        "variety     {} given names (most common {:.1} %), {} surnames ({:.1} %), {} addresses, {} cities (largest {:.1} %)",
        r.given_names,
        r.top_given_name_share * 100.0,
        r.surnames,
        r.top_surname_share * 100.0,
        r.streets,
        r.cities,
        r.largest_city_share * 100.0
    );
    println!(
        "matching    {} profiles read ({} records), {} candidate pairs, {} matches, {} for review (merge at posterior ≥ {}, weight ≥ {:.1}; review ≥ {}, weight ≥ {:.1})",
        r.profiles_read,
        r.records,
        r.candidate_pairs,
        r.matches,
        r.review,
        r.options.match_probability,
        r.match_weight.unwrap_or(f64::NAN),
        r.options.review_probability,
        r.review_weight.unwrap_or(f64::NAN)
    );
    println!(
        "time        matching {:.1} s ({:.0} profiles/s; reading {}, linking {}, deciding {}); applying merges {:.1} s",
        r.matching_seconds,
        r.profiles_per_second,
        secs(r.reading_seconds),
        secs(r.linking_seconds),
        secs(r.deciding_seconds),
        r.apply_seconds
    );
    println!(
        "merges      {} applied, {} refused by the identity rules, {} already one",
        r.merges_applied, r.merges_refused, r.merges_already_one
    );
    println!(
        "quality     precision {:.4} ({} of {} automatic pairs are one person), recall {:.4} ({} of {} duplicates merged)",
        r.precision,
        r.true_matches,
        r.true_matches + r.false_matches,
        r.recall,
        (r.recall * r.duplicates as f64).round(),
        r.duplicates
    );
    println!(
        "false pairs {} between two people's own profiles, {} joining a duplicate to somebody else; {} agree exactly on street and postcode",
        r.false_matches_two_people, r.false_matches_wrong_person, r.false_matches_same_address
    );
    println!(
        "review      {} duplicates waiting for review ({:.1} % of duplicates), {} review pairs are not one person",
        r.duplicates_in_review,
        r.review_share * 100.0,
        r.false_review_pairs
    );
    println!(
        "profiles    after the merges, {} duplicates resolve to their person, {} to somebody else",
        r.resolved_to_person, r.resolved_to_other
    );
    println!("by weight   merging every pair at or above a weight would give:");
    for w in &r.by_weight {
        println!(
            "  ≥ {:>5.1}  {:>8} pairs  precision {:.4}  recall {:.4}",
            w.weight, w.pairs, w.precision, w.recall
        );
    }
    if let Some(b) = &r.blocking {
        println!(
            "blocking    {} candidate pairs, {} of {} duplicates proposed ({:.1} s, run alone):",
            b.candidate_pairs, b.duplicates_found, r.duplicates, b.seconds
        );
        for rule in &b.rules {
            println!(
                "  {:<40} {:>9} pairs  {:>6} duplicates ({} by no other pass)  {} blocks skipped",
                rule.rule,
                rule.pairs,
                rule.duplicates_found,
                rule.duplicates_found_only,
                rule.skipped_blocks
            );
        }
    }
    println!("by kind     duplicates  merged  review  (a duplicate may show several)");
    for (kind, f) in &r.by_kind {
        println!(
            "  {kind:<20} {:>8} {:>7.1} % {:>5.1} %",
            f.duplicates,
            100.0 * f.merged as f64 / f.duplicates.max(1) as f64,
            100.0 * f.review as f64 / f.duplicates.max(1) as f64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Damerau–Levenshtein distance with adjacent transpositions (optimal string alignment).
    fn distance(a: &str, b: &str) -> usize {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for (i, row) in d.iter_mut().enumerate() {
            row[0] = i;
        }
        d[0] = (0..=b.len()).collect();
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                d[i][j] = (d[i - 1][j] + 1)
                    .min(d[i][j - 1] + 1)
                    .min(d[i - 1][j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    d[i][j] = d[i][j].min(d[i - 2][j - 2] + 1);
                }
            }
        }
        d[a.len()][b.len()]
    }

    #[test]
    fn a_typo_is_one_edit_of_a_letter() {
        let mut rng = SmallRng::seed_from_u64(1);
        for s in ["Annabel", "12 Quayside Lane", "Lee", "Oakwood Gardens"] {
            for _ in 0..200 {
                let t = typo(s, &mut rng);
                assert_eq!(distance(s, &t), 1, "{s} -> {t}");
                let digits = |x: &str| x.chars().filter(|c| !c.is_alphabetic()).collect::<String>();
                assert_eq!(digits(s), digits(&t), "{s} -> {t}");
            }
        }
        assert_eq!(typo("Al", &mut rng), "Al");
    }

    #[test]
    fn the_population_is_deterministic_and_varied() {
        let lex = Lexicon::new();
        assert!(lex.given.len() >= 500 && lex.surnames.len() >= 1_000);
        assert!(lex.streets.len() >= 4_000 && lex.cities.len() == CITIES);
        let a = population(&lex, 2_000, 0.15, 3);
        assert_eq!(a, population(&lex, 2_000, 0.15, 3));
        assert_ne!(a, population(&lex, 2_000, 0.15, 4));
        let distinct = |f: fn(&Person) -> &str| {
            a.iter()
                .map(f)
                .collect::<std::collections::HashSet<_>>()
                .len()
        };
        assert!(distinct(|p| &p.given) > 200, "{}", distinct(|p| &p.given));
        assert!(
            distinct(|p| &p.surname) > 500,
            "{}",
            distinct(|p| &p.surname)
        );
        let emails: std::collections::HashSet<_> =
            a.iter().filter_map(|p| p.email.clone()).collect();
        let phones: std::collections::HashSet<_> =
            a.iter().filter_map(|p| p.phone.clone()).collect();
        assert_eq!(emails.len(), a.iter().filter(|p| p.email.is_some()).count());
        assert_eq!(phones.len(), a.iter().filter(|p| p.phone.is_some()).count());
    }

    #[test]
    fn corruption_is_deterministic_and_changes_only_what_it_says() {
        let lex = Lexicon::new();
        let people = population(&lex, 3_000, 0.15, 5);
        let run = |seed| {
            let mut rng = SmallRng::seed_from_u64(seed);
            people
                .iter()
                .enumerate()
                .map(|(j, p)| corrupt(p, &lex, j, &mut rng))
                .collect::<Vec<_>>()
        };
        let dups = run(9);
        assert_eq!(dups, run(9));
        let mut seen = [0usize; KINDS.len()];
        for (p, (d, kinds)) in people.iter().zip(&dups) {
            let did = |k: usize| kinds.contains(&k);
            for &k in kinds {
                seen[k] += 1;
            }
            // Never an identifier of the person.
            assert!(d.email.is_none() || d.email != p.email);
            assert!(d.phone.is_none() || d.phone != p.phone);
            assert_eq!(d.email.is_some(), did(10));
            // Names: unchanged, one typo each, possibly swapped.
            let (given, surname) = if did(3) {
                (&d.surname, &d.given)
            } else {
                (&d.given, &d.surname)
            };
            assert_eq!(
                distance(&p.given, given),
                usize::from(did(1)),
                "{p:?} {d:?}"
            );
            assert_eq!(
                distance(&p.surname, surname),
                usize::from(did(2)),
                "{p:?} {d:?}"
            );
            // The address: moved, or at most a typo or an abbreviation, or missing.
            if !did(4) {
                match (&p.street, &d.street) {
                    (Some(a), Some(b)) if a != b => assert!(did(5) || did(6), "{a} {b}"),
                    (Some(_), None) => assert!(did(9)),
                    _ => {}
                }
                if d.city.is_some() {
                    assert_eq!(d.city, p.city);
                }
                if let (Some(a), Some(b)) = (&p.postcode, &d.postcode) {
                    assert_eq!(distance(a, b), usize::from(did(7)), "{a} {b}");
                }
            }
            match (&p.birthday, &d.birthday) {
                (Some(a), Some(b)) => {
                    assert_eq!(a[..4], b[..4]);
                    assert_eq!(a != b, did(8), "{a} {b}");
                }
                (Some(_), None) => assert!(did(9)),
                (None, b) => assert!(b.is_none()),
            }
            let missing = [&d.street, &d.city, &d.postcode, &d.birthday]
                .iter()
                .filter(|v| v.is_none())
                .count()
                - [&p.birthday].iter().filter(|v| v.is_none()).count();
            assert!(missing <= usize::from(did(9)), "{p:?} {d:?}");
        }
        // Every kind of corruption happens.
        assert!(seen.iter().all(|&n| n > 0), "{seen:?}");
    }
}
