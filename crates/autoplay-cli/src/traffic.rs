//! The demo's traffic generator: simulated users of an example project-management
//! app, sending what PostHog's browser library would (`$pageview`, `$autocapture`
//! clicks, changes and submits with `$elements`, custom events, and the low-signal
//! `$identify`/`$pageleave` the connector drops) as signed webhook batches.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const ORIGIN: &str = "https://app.example.com";

/// One thing a user does.
#[derive(Debug, Clone)]
enum Step {
    /// Who the user is: `$identify` with `$set.email` (dropped, but teaches the email).
    Identify,
    /// A page load.
    Page { path: String, title: &'static str },
    /// A click on an element showing `text`.
    Click {
        tag: &'static str,
        text: &'static str,
        class: &'static str,
    },
    /// Typing into the input named `name` of form `form`.
    Change {
        name: &'static str,
        form: &'static str,
    },
    /// Submitting form `form`, labelled `label`.
    Submit {
        form: &'static str,
        label: &'static str,
    },
    /// An event the app sends itself.
    Custom {
        name: &'static str,
        properties: Value,
    },
    /// Leaving the page (dropped by the connector).
    Leave,
}

/// A simulated user walking through one of the journeys, session after session.
#[derive(Debug)]
pub struct User {
    distinct_id: String,
    email: Option<String>,
    email_on_events: bool,
    journey: usize,
    session_id: String,
    window_id: String,
    steps: Vec<Step>,
    next: usize,
    current_path: String,
    referrer: Option<String>,
    sessions: usize,
    rng: fastrand::Rng,
}

const PEOPLE: [(&str, Option<&str>); 6] = [
    ("user_alice", Some("alice@example.com")),
    ("user_bob", Some("bob@example.com")),
    ("anon_0193c4e2b7", None),
    ("user_dana", Some("dana@example.com")),
    ("user_erik", Some("erik@example.com")),
    ("anon_0193c4f9aa", None),
];

impl User {
    /// The `n`-th simulated user; each follows a different journey.
    pub fn new(n: usize, seed: u64) -> Self {
        let (id, email) = PEOPLE[n % PEOPLE.len()];
        let distinct_id = if n < PEOPLE.len() {
            id.to_owned()
        } else {
            format!("{id}_{n}")
        };
        let mut user = Self {
            distinct_id,
            email: email.map(str::to_owned),
            email_on_events: n % 2 == 1,
            journey: n,
            session_id: String::new(),
            window_id: String::new(),
            steps: Vec::new(),
            next: 0,
            current_path: "/".into(),
            referrer: None,
            sessions: 0,
            rng: fastrand::Rng::with_seed(seed),
        };
        user.new_session();
        user
    }

    fn new_session(&mut self) {
        self.session_id = uuid(&mut self.rng);
        self.window_id = uuid(&mut self.rng);
        self.steps = journey(self.journey, &mut self.rng);
        if self.email.is_none() {
            self.steps.retain(|s| !matches!(s, Step::Identify));
        }
        self.next = 0;
        self.referrer = None;
        self.journey += 1;
        self.sessions += 1;
    }

    /// Sessions begun so far, the current one included.
    pub fn sessions_started(&self) -> usize {
        self.sessions
    }

    /// Whether the current session has sent all its events.
    pub fn session_done(&self) -> bool {
        self.next >= self.steps.len()
    }

    /// The next 1–3 PostHog events of this user, timestamped from `now` on.
    pub fn next_batch(&mut self, now: SystemTime) -> Vec<Value> {
        if self.next >= self.steps.len() {
            self.new_session();
        }
        let n = self.rng.usize(1..=3).min(self.steps.len() - self.next);
        let mut events = Vec::with_capacity(n);
        for i in 0..n {
            let step = self.steps[self.next].clone();
            self.next += 1;
            let ts = now + Duration::from_millis(i as u64 * 350);
            events.push(self.event(&step, ts));
        }
        events
    }

    fn event(&mut self, step: &Step, ts: SystemTime) -> Value {
        let mut properties = json!({
            "$session_id": self.session_id,
            "$window_id": self.window_id,
            "$lib": "web",
            "$lib_version": "1.200.0",
            "$browser": "Chrome",
            "$os": "Mac OS X",
            "$host": "app.example.com",
        });
        let name = match step {
            Step::Identify => {
                properties["$set"] = json!({ "email": self.email });
                "$identify".to_owned()
            }
            Step::Page { path, title } => {
                if let Some(referrer) = self.referrer.take() {
                    properties["$referrer"] = json!(referrer);
                }
                self.current_path = path.clone();
                properties["title"] = json!(title);
                "$pageview".to_owned()
            }
            Step::Click { tag, text, class } => {
                properties["$event_type"] = json!("click");
                properties["$el_text"] = json!(text);
                properties["$elements"] = json!([
                    {"tag_name": tag, "$el_text": text, "attr__class": class,
                     "nth_child": 2, "nth_of_type": 1},
                    {"tag_name": "div", "attr__class": "toolbar", "nth_child": 1, "nth_of_type": 1},
                ]);
                "$autocapture".to_owned()
            }
            Step::Change { name, form } => {
                properties["$event_type"] = json!("change");
                properties["$elements"] = json!([
                    {"tag_name": "input", "attr__name": name, "attr__type": "text",
                     "nth_child": 1, "nth_of_type": 1},
                    {"tag_name": "form", "attr__id": form},
                ]);
                "$autocapture".to_owned()
            }
            Step::Submit { form, label } => {
                properties["$event_type"] = json!("submit");
                properties["$elements"] = json!([
                    {"tag_name": "form", "attr__id": form, "attr__aria-label": label},
                ]);
                "$autocapture".to_owned()
            }
            Step::Custom {
                name,
                properties: extra,
            } => {
                if let (Some(props), Some(extra)) = (properties.as_object_mut(), extra.as_object())
                {
                    props.extend(extra.clone());
                }
                (*name).to_owned()
            }
            Step::Leave => "$pageleave".to_owned(),
        };
        let url = format!("{ORIGIN}{}", self.current_path);
        let pathname = self
            .current_path
            .split(['?', '#'])
            .next()
            .unwrap_or("/")
            .to_owned();
        properties["$current_url"] = json!(url);
        properties["$pathname"] = json!(pathname);
        if matches!(step, Step::Page { .. }) {
            self.referrer = Some(url);
        }
        if let Some(email) = &self.email
            && self.email_on_events
        {
            // Some apps put the email on every event.
            properties["email"] = json!(email);
        }
        json!({
            "event": name,
            "distinct_id": self.distinct_id,
            "timestamp": iso8601(ts),
            "uuid": uuid(&mut self.rng),
            "properties": properties,
        })
    }
}

/// How many journeys [`journey`] knows.
const JOURNEYS: usize = 4;

/// The journeys through the example app; each session picks the next one.
fn journey(n: usize, rng: &mut fastrand::Rng) -> Vec<Step> {
    let project = rng.u32(100..9999);
    let invoice = uuid(rng);
    let page = |path: String, title| Step::Page { path, title };
    let click = |tag, text, class| Step::Click { tag, text, class };
    match n % JOURNEYS {
        0 => vec![
            Step::Identify,
            page("/dashboard".into(), "Dashboard"),
            click("a", "Open project", "project-card__link"),
            page(
                format!("/projects/{project}/board?view=kanban"),
                "Project board",
            ),
            click("button", "New task", "btn btn-primary"),
            Step::Change {
                name: "task_title",
                form: "new-task-form",
            },
            Step::Submit {
                form: "new-task-form",
                label: "Create task",
            },
            Step::Custom {
                name: "task_created",
                properties: json!({ "project_id": project, "column": "To do" }),
            },
            click("button", "Move to In progress", "task-card__move"),
            Step::Leave,
        ],
        1 => vec![
            Step::Identify,
            page("/dashboard".into(), "Dashboard"),
            click("a", "Settings", "nav-link"),
            page("/settings/billing".into(), "Billing settings"),
            Step::Change {
                name: "company_vat_id",
                form: "billing-form",
            },
            Step::Submit {
                form: "billing-form",
                label: "Billing details",
            },
            click("a", "Invoices", "nav-link"),
            page("/invoices".into(), "Invoices"),
            page(format!("/invoices/{invoice}"), "Invoice INV-2024-0042"),
            click("a", "Download PDF", "btn btn-secondary"),
            Step::Custom {
                name: "invoice_downloaded",
                properties: json!({ "format": "pdf" }),
            },
            Step::Leave,
        ],
        2 => vec![
            page("/dashboard?utm_source=newsletter".into(), "Dashboard"),
            click("button", "Invite teammates", "btn btn-outline"),
            Step::Change {
                name: "invite_email",
                form: "invite-form",
            },
            Step::Submit {
                form: "invite-form",
                label: "Send invitation",
            },
            page("/pricing".into(), "Pricing"),
            click("button", "Start free trial", "btn btn-cta"),
            Step::Custom {
                name: "trial_started",
                properties: json!({ "plan": "team" }),
            },
            page(format!("/projects/{project}/board"), "Project board"),
            Step::Leave,
        ],
        // The export that fails twice before the user gives up: what a support team
        // wants to find ("who tried to export a CSV and failed?"), and what gives
        // the RAG example (examples/rag) a real answer among the other journeys.
        _ => {
            let failed = |attempt: u32| Step::Custom {
                name: "export_failed",
                properties: json!({
                    "format": "csv",
                    "report": "Monthly usage",
                    "error": "Export failed",
                    "attempt": attempt,
                }),
            };
            vec![
                Step::Identify,
                page("/dashboard".into(), "Dashboard"),
                click("a", "Reports", "nav-link"),
                page("/reports?range=last-30-days".into(), "Reports"),
                click("button", "Export CSV", "btn btn-secondary"),
                failed(1),
                click("button", "Retry", "toast__action"),
                failed(2),
                click("button", "Dismiss", "toast__close"),
                page("/dashboard".into(), "Dashboard"),
                Step::Leave,
            ]
        }
    }
}

/// A random version-4 UUID.
fn uuid(rng: &mut fastrand::Rng) -> String {
    let a = rng.u128(..);
    let a = (a & !(0xf_u128 << 76) | (0x4_u128 << 76)) & !(0x3_u128 << 62) | (0x2_u128 << 62);
    let hex = format!("{a:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC), as PostHog timestamps are written.
pub fn iso8601(t: SystemTime) -> String {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Howard Hinnant's civil_from_days.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(1_705_314_603_120);
        assert_eq!(iso8601(t), "2024-01-15T10:30:03.120Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // leap day
        assert_eq!(iso8601(t), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn uuids_look_like_uuids() {
        let mut rng = fastrand::Rng::with_seed(1);
        let id = uuid(&mut rng);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn users_send_posthog_shaped_events_and_start_new_sessions() {
        let mut user = User::new(0, 7);
        let first_session = user.session_id.clone();
        let mut events = Vec::new();
        while events.len() < 40 {
            events.extend(user.next_batch(SystemTime::now()));
        }
        assert_ne!(user.session_id, first_session);
        for event in &events {
            let props = &event["properties"];
            assert!(event["event"].is_string());
            assert_eq!(event["distinct_id"], "user_alice");
            assert!(props["$session_id"].is_string());
            assert!(props["$current_url"].as_str().unwrap().starts_with(ORIGIN));
            if event["event"] == "$autocapture" {
                assert!(props["$elements"].is_array());
                assert!(props["$event_type"].is_string());
            }
        }
        assert_eq!(events[0]["event"], "$identify");
        assert_eq!(
            events[0]["properties"]["$set"]["email"],
            "alice@example.com"
        );
        assert_eq!(events[1]["event"], "$pageview");
        assert_eq!(events[1]["properties"]["title"], "Dashboard");
    }

    /// Every event of `user`'s current session, and the session's id.
    fn whole_session(user: &mut User) -> (String, Vec<Value>) {
        let mut events = user.next_batch(SystemTime::now());
        let id = user.session_id.clone();
        while !user.session_done() {
            events.extend(user.next_batch(SystemTime::now()));
        }
        (id, events)
    }

    #[test]
    fn the_fourth_journey_is_a_csv_export_that_fails_and_is_given_up() {
        let mut user = User::new(3, 11);
        let (session, events) = whole_session(&mut user);
        assert_eq!(user.sessions_started(), 1);
        assert!(
            events
                .iter()
                .all(|e| e["properties"]["$session_id"] == session)
        );
        let described: Vec<String> = events
            .iter()
            .map(|e| {
                let p = &e["properties"];
                match e["event"].as_str().unwrap() {
                    "$pageview" => format!("view {}", p["$pathname"].as_str().unwrap()),
                    "$autocapture" => format!("click {}", p["$el_text"].as_str().unwrap()),
                    other => format!("{other} {}", p["error"].as_str().unwrap_or("")),
                }
            })
            .collect();
        assert_eq!(
            described,
            [
                "$identify ",
                "view /dashboard",
                "click Reports",
                "view /reports",
                "click Export CSV",
                "export_failed Export failed",
                "click Retry",
                "export_failed Export failed",
                "click Dismiss",
                "view /dashboard",
                "$pageleave ",
            ]
        );
        assert_eq!(events[0]["properties"]["$set"]["email"], "dana@example.com");
        assert_eq!(events[5]["properties"]["format"], "csv");
        assert_eq!(events[7]["properties"]["attempt"], 2);
    }

    #[test]
    fn users_go_round_all_journeys_one_session_at_a_time() {
        let mut user = User::new(1, 3);
        let mut exports = 0;
        let mut ids = Vec::new();
        for n in 1..=8 {
            let (id, events) = whole_session(&mut user);
            assert_eq!(user.sessions_started(), n);
            assert!(user.session_done());
            exports += usize::from(events.iter().any(|e| e["event"] == "export_failed"));
            ids.push(id);
        }
        assert_eq!(exports, 2, "one export journey in every four sessions");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 8, "a new session id each time");
    }
}
