//! The words of a notice: e-mail subject and body and the SMS, in Swedish or English, with
//! the window in the operator's local time.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use chrono_tz::Tz;

use super::maintenance::{Language, NoticeKind, WindowKind};

/// What a notice is about.
#[derive(Debug, Clone)]
pub struct NoticeSubject<'a> {
    pub operator_name: &'a str,
    pub kind: WindowKind,
    pub title: &'a str,
    pub description: &'a str,
    pub systems: &'a [String],
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
    /// A free-text update (disruption updates, cancellation reasons).
    pub message: Option<&'a str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeText {
    pub subject: String,
    pub body: String,
    pub sms: String,
}

/// An SMS longer than this is cut (three concatenated messages).
pub const MAX_SMS_CHARS: usize = 459;

const SV_DAYS: [&str; 7] = [
    "måndag", "tisdag", "onsdag", "torsdag", "fredag", "lördag", "söndag",
];
const SV_MONTHS: [&str; 12] = [
    "januari",
    "februari",
    "mars",
    "april",
    "maj",
    "juni",
    "juli",
    "augusti",
    "september",
    "oktober",
    "november",
    "december",
];

/// A time as people read it: `tisdag 15 december 2026 kl. 10:00` or
/// `Tuesday 15 December 2026 at 10:00`.
pub fn local_time(t: DateTime<Utc>, tz: Tz, lang: Language) -> String {
    let l = t.with_timezone(&tz);
    let day = l.weekday().num_days_from_monday() as usize;
    let month = l.month0() as usize;
    match lang {
        Language::Sv => format!(
            "{} {} {} {} kl. {}",
            SV_DAYS[day],
            l.day(),
            SV_MONTHS[month],
            l.year(),
            l.format("%H:%M")
        ),
        Language::En => format!("{} at {}", l.format("%A %-d %B %Y"), l.format("%H:%M")),
    }
}

/// The span of a window: the end's date is left out when it is the start's.
pub fn local_span(
    start: DateTime<Utc>,
    end: Option<DateTime<Utc>>,
    tz: Tz,
    lang: Language,
) -> String {
    let from = local_time(start, tz, lang);
    match end {
        None => match lang {
            Language::Sv => format!("från {from}, tills vidare"),
            Language::En => format!("from {from}, until further notice"),
        },
        Some(end)
            if end.with_timezone(&tz).date_naive() == start.with_timezone(&tz).date_naive() =>
        {
            format!("{from}–{}", end.with_timezone(&tz).format("%H:%M"))
        }
        Some(end) => format!("{from} – {}", local_time(end, tz, lang)),
    }
}

/// The notice of `kind` about `s`.
pub fn render(kind: NoticeKind, s: &NoticeSubject<'_>, tz: Tz, lang: Language) -> NoticeText {
    let span = local_span(s.starts_at, s.ends_at, tz, lang);
    let (headline, lead) = headline(kind, s.kind, lang);
    let subject = format!("{headline}: {}", s.title);
    let mut body = format!("{lead}\n\n{}\n", s.title);
    let when = match lang {
        Language::Sv => "Tid",
        Language::En => "When",
    };
    body.push_str(&format!("{when}: {span}\n"));
    if !s.systems.is_empty() {
        let label = match lang {
            Language::Sv => "Berörda system",
            Language::En => "Affected systems",
        };
        body.push_str(&format!("{label}: {}\n", s.systems.join(", ")));
    }
    if let Some(message) = s.message.filter(|m| !m.trim().is_empty()) {
        body.push_str(&format!("\n{message}\n"));
    }
    if !s.description.trim().is_empty() {
        body.push_str(&format!("\n{}\n", s.description.trim()));
    }
    let closing = match lang {
        Language::Sv => "Med vänlig hälsning",
        Language::En => "Kind regards",
    };
    body.push_str(&format!("\n{closing}\n{}\n", s.operator_name));
    let mut sms = format!("{}: {subject}. {span}.", s.operator_name);
    if let Some(message) = s.message.filter(|m| !m.trim().is_empty()) {
        sms.push(' ');
        sms.push_str(message.trim());
    }
    if sms.chars().count() > MAX_SMS_CHARS {
        sms = sms.chars().take(MAX_SMS_CHARS - 1).collect::<String>() + "…";
    }
    NoticeText { subject, body, sms }
}

/// The message to a provider's IT contacts about a phone that has broken its policy for longer
/// than the grace period: which phone, since when, and every reason, so they can fix it.
pub fn compliance_alert(
    serial: &str,
    since: DateTime<Utc>,
    reasons: &[String],
    operator_name: &str,
    tz: Tz,
    lang: Language,
) -> NoticeText {
    let when = local_time(since, tz, lang);
    let (subject, intro, closing) = match lang {
        Language::Sv => (
            format!("Telefon {serial} följer inte kommunens krav"),
            format!("Telefonen {serial} har inte följt kommunens krav sedan {when}:"),
            "Med vänlig hälsning",
        ),
        Language::En => (
            format!("Phone {serial} does not meet the municipality's policy"),
            format!("The phone {serial} has not met the municipality's policy since {when}:"),
            "Kind regards",
        ),
    };
    let mut body = format!("{intro}\n\n");
    for reason in reasons {
        body.push_str(&format!("- {reason}\n"));
    }
    body.push_str(&format!("\n{closing}\n{operator_name}\n"));
    let mut sms = format!("{operator_name}: {subject}. {}", reasons.join("; "));
    if sms.chars().count() > MAX_SMS_CHARS {
        sms = sms.chars().take(MAX_SMS_CHARS - 1).collect::<String>() + "…";
    }
    NoticeText { subject, body, sms }
}

/// What a phone reported lost or stolen tells the service desk: which phone, which provider,
/// when it went missing, whether the report is late, and that the SIM block must be confirmed
/// with the phone company.
#[derive(Debug, Clone, Copy)]
pub struct LossFacts<'a> {
    pub serial: &'a str,
    pub provider: &'a str,
    pub stolen: bool,
    pub discovered_at: DateTime<Utc>,
    pub late: bool,
    pub sim: Option<&'a str>,
}

pub fn loss_report(facts: &LossFacts<'_>, tz: Tz, lang: Language) -> NoticeText {
    let when = local_time(facts.discovered_at, tz, lang);
    let LossFacts {
        serial, provider, ..
    } = *facts;
    let (subject, mut body) = match lang {
        Language::Sv => (
            format!(
                "Telefon {serial} anmäld {} ({provider})",
                if facts.stolen { "stulen" } else { "förlorad" }
            ),
            format!(
                "{provider} har anmält telefonen {serial} {}. Förlusten upptäcktes {when}.\n\
                 Telefonen har fått ett låskommando i förlustläge.\n",
                if facts.stolen { "stulen" } else { "förlorad" }
            ),
        ),
        Language::En => (
            format!(
                "Phone {serial} reported {} ({provider})",
                if facts.stolen { "stolen" } else { "lost" }
            ),
            format!(
                "{provider} has reported the phone {serial} {}. The loss was discovered {when}.\n\
                 The phone has been sent a lost-mode lock.\n",
                if facts.stolen { "stolen" } else { "lost" }
            ),
        ),
    };
    if let Some(iccid) = facts.sim {
        body.push_str(&match lang {
            Language::Sv => format!("Bekräfta spärren av SIM-kortet {iccid} hos operatören.\n"),
            Language::En => format!("Confirm the block of SIM {iccid} with the phone company.\n"),
        });
    }
    if facts.late {
        body.push_str(match lang {
            Language::Sv => "Anmälan kom mer än 48 timmar efter upptäckten.\n",
            Language::En => "The report came more than 48 hours after the discovery.\n",
        });
    }
    let sms = subject.chars().take(MAX_SMS_CHARS).collect();
    NoticeText { subject, body, sms }
}

/// The message to a provider's IT contacts when a phone's SIM has used 80 % or all of the data
/// its plan includes this month.
pub fn data_use_alert(
    serial: &str,
    phone_number: &str,
    percent: u32,
    plan_gb: u32,
    operator_name: &str,
    lang: Language,
) -> NoticeText {
    let (subject, body) = match lang {
        Language::Sv => (
            format!("Telefon {serial} har använt {percent} % av månadens data"),
            format!(
                "Telefonen {serial} ({phone_number}) har använt {percent} % av de {plan_gb} GB mobildata \
                 som ingår i abonnemanget den här månaden.\n\nMed vänlig hälsning\n{operator_name}\n"
            ),
        ),
        Language::En => (
            format!("Phone {serial} has used {percent} % of this month's data"),
            format!(
                "The phone {serial} ({phone_number}) has used {percent} % of the {plan_gb} GB of mobile \
                 data its plan includes this month.\n\nKind regards\n{operator_name}\n"
            ),
        ),
    };
    let sms = subject.chars().take(MAX_SMS_CHARS).collect();
    NoticeText { subject, body, sms }
}

/// What a reminder is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reminder {
    WarrantyEnds,
    LeaseEnds,
}

/// The service desk's reminder of a warranty or a lease ending on `date`.
pub fn reminder(what: Reminder, serial: &str, date: NaiveDate, lang: Language) -> NoticeText {
    let (subject, body) = match (what, lang) {
        (Reminder::WarrantyEnds, Language::Sv) => (
            format!("Garantin för telefon {serial} går ut {date}"),
            format!("Garantin för telefonen {serial} går ut {date}. Anmäl eventuella fel innan dess.\n"),
        ),
        (Reminder::WarrantyEnds, Language::En) => (
            format!("The warranty of phone {serial} ends on {date}"),
            format!("The warranty of the phone {serial} ends on {date}. Report any fault before then.\n"),
        ),
        (Reminder::LeaseEnds, Language::Sv) => (
            format!("Leasingavtalet för telefon {serial} upphör {date}"),
            format!("Leasingavtalet för telefonen {serial} upphör {date}. Förläng det eller planera återlämningen.\n"),
        ),
        (Reminder::LeaseEnds, Language::En) => (
            format!("The lease of phone {serial} ends on {date}"),
            format!("The lease of the phone {serial} ends on {date}. Extend it or plan its return.\n"),
        ),
    };
    let sms = subject.chars().take(MAX_SMS_CHARS).collect();
    NoticeText { subject, body, sms }
}

/// The service desk's reminder that the operator's MDM push certificate runs out on `date`:
/// when it lapses, no enrolled iPhone can be reached.
pub fn push_certificate_reminder(topic: &str, date: NaiveDate, lang: Language) -> NoticeText {
    let (subject, body) = match lang {
        Language::Sv => (
            format!("MDM-pushcertifikatet går ut {date}"),
            format!(
                "Apples MDM-pushcertifikat (ämne {topic}) går ut {date}. Förnya det på Apples portal för pushcertifikat med samma Apple-konto och ladda upp det igen; annars går det inte längre att nå någon inskriven iPhone.\n"
            ),
        ),
        Language::En => (
            format!("The MDM push certificate runs out on {date}"),
            format!(
                "Apple's MDM push certificate (topic {topic}) runs out on {date}. Renew it at Apple's push certificates portal with the same Apple Account and upload it again; otherwise no enrolled iPhone can be reached.\n"
            ),
        ),
    };
    let sms = subject.chars().take(MAX_SMS_CHARS).collect();
    NoticeText { subject, body, sms }
}

/// The lost-mode text on a lost phone's lock screen.
pub fn lost_mode_message(operator_name: &str, lang: Language) -> String {
    let text = match lang {
        Language::Sv => format!("Den här telefonen tillhör {operator_name}. Hittad? Ring oss."),
        Language::En => format!("This phone belongs to {operator_name}. Found it? Please call us."),
    };
    text.chars().take(200).collect()
}

fn headline(kind: NoticeKind, window: WindowKind, lang: Language) -> (&'static str, &'static str) {
    use NoticeKind as K;
    let planned = window == WindowKind::Planned;
    match (lang, kind) {
        (Language::Sv, K::Announced) => (
            "Planerat underhåll",
            "Vi planerar underhåll som påverkar era tjänster.",
        ),
        (Language::Sv, K::Reminder) => (
            "Påminnelse om planerat underhåll",
            "Påminnelse: det planerade underhållet börjar snart.",
        ),
        (Language::Sv, K::Started) if planned => {
            ("Underhåll pågår", "Det planerade underhållet har börjat.")
        }
        (Language::Sv, K::Ended) if planned => (
            "Tjänsten är i drift igen",
            "Underhållet är klart och tjänsten är i drift igen.",
        ),
        (Language::Sv, K::Started | K::Ended) => ("Driftstörning", "Information om driftstörning."),
        (Language::Sv, K::Rescheduled) => (
            "Ändrad tid för planerat underhåll",
            "Det planerade underhållet har flyttats till en ny tid.",
        ),
        (Language::Sv, K::Cancelled) => (
            "Inställt underhåll",
            "Det planerade underhållet är inställt.",
        ),
        (Language::Sv, K::DisruptionOpened) => (
            "Driftstörning",
            "Vi har en driftstörning som påverkar era tjänster.",
        ),
        (Language::Sv, K::DisruptionUpdate) => (
            "Uppdatering om driftstörning",
            "Ny information om driftstörningen.",
        ),
        (Language::Sv, K::DisruptionFollowUp) => (
            "Driftstörningen pågår",
            "Driftstörningen pågår fortfarande; vi arbetar med felet.",
        ),
        (Language::Sv, K::DisruptionResolved) => (
            "Driftstörningen är åtgärdad",
            "Driftstörningen är åtgärdad och tjänsten är i drift igen.",
        ),
        (Language::En, K::Announced) => (
            "Planned maintenance",
            "We have planned maintenance that affects your services.",
        ),
        (Language::En, K::Reminder) => (
            "Reminder of planned maintenance",
            "Reminder: the planned maintenance starts soon.",
        ),
        (Language::En, K::Started) if planned => (
            "Maintenance in progress",
            "The planned maintenance has started.",
        ),
        (Language::En, K::Ended) if planned => (
            "Back in service",
            "The maintenance is complete and the service is back in service.",
        ),
        (Language::En, K::Started | K::Ended) => ("Disruption", "Information about a disruption."),
        (Language::En, K::Rescheduled) => (
            "Planned maintenance rescheduled",
            "The planned maintenance has moved to a new time.",
        ),
        (Language::En, K::Cancelled) => (
            "Planned maintenance cancelled",
            "The planned maintenance is cancelled.",
        ),
        (Language::En, K::DisruptionOpened) => (
            "Disruption",
            "We have a disruption that affects your services.",
        ),
        (Language::En, K::DisruptionUpdate) => {
            ("Disruption update", "New information about the disruption.")
        }
        (Language::En, K::DisruptionFollowUp) => (
            "Disruption ongoing",
            "The disruption is still ongoing; we are working on it.",
        ),
        (Language::En, K::DisruptionResolved) => (
            "Disruption resolved",
            "The disruption is resolved and the service is back in service.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::Europe::Stockholm;

    fn subject<'a>(systems: &'a [String]) -> NoticeSubject<'a> {
        NoticeSubject {
            operator_name: "Kommunens IT",
            kind: WindowKind::Planned,
            title: "Uppgradering av MDM",
            description: "Telefonerna kan inte checka in under tiden.",
            systems,
            starts_at: "2026-10-24T20:00:00Z".parse().expect("t"),
            ends_at: Some("2026-10-25T05:00:00Z".parse().expect("t")),
            message: None,
        }
    }

    #[test]
    fn swedish_notices_show_local_times_on_both_sides_of_the_dst_change() {
        let systems = vec!["MDM".to_string()];
        let text = render(
            NoticeKind::Announced,
            &subject(&systems),
            Stockholm,
            Language::Sv,
        );
        assert_eq!(text.subject, "Planerat underhåll: Uppgradering av MDM");
        assert!(
            text.body.contains(
                "Tid: lördag 24 oktober 2026 kl. 22:00 – söndag 25 oktober 2026 kl. 06:00"
            ),
            "{}",
            text.body
        );
        assert!(text.body.contains("Berörda system: MDM"));
        assert!(text.sms.starts_with("Kommunens IT: Planerat underhåll"));
    }

    #[test]
    fn english_is_available_and_same_day_windows_are_short() {
        let systems = vec![];
        let mut s = subject(&systems);
        s.starts_at = "2026-12-15T09:00:00Z".parse().expect("t");
        s.ends_at = Some("2026-12-15T11:00:00Z".parse().expect("t"));
        let text = render(NoticeKind::Ended, &s, Stockholm, Language::En);
        assert_eq!(text.subject, "Back in service: Uppgradering av MDM");
        assert!(
            text.body
                .contains("When: Tuesday 15 December 2026 at 10:00–12:00"),
            "{}",
            text.body
        );
    }

    #[test]
    fn long_sms_are_cut() {
        let systems = vec![];
        let long = "x".repeat(1000);
        let mut s = subject(&systems);
        s.message = Some(&long);
        let text = render(NoticeKind::DisruptionUpdate, &s, Stockholm, Language::Sv);
        assert_eq!(text.sms.chars().count(), MAX_SMS_CHARS);
    }

    #[test]
    fn a_compliance_alert_names_the_phone_the_time_and_every_reason() {
        let since = "2026-11-20T09:00:00Z".parse().expect("time");
        let text = compliance_alert(
            "R58N12ABCDE",
            since,
            &[
                "PIN is 3 digits; policy requires 4".into(),
                "Phoniro app missing".into(),
            ],
            "Kommunens IT",
            chrono_tz::Europe::Stockholm,
            Language::Sv,
        );
        assert_eq!(
            text.subject,
            "Telefon R58N12ABCDE följer inte kommunens krav"
        );
        assert!(
            text.body
                .contains("sedan fredag 20 november 2026 kl. 10:00"),
            "{}",
            text.body
        );
        assert!(text
            .body
            .contains("- PIN is 3 digits; policy requires 4\n- Phoniro app missing"));
    }

    #[test]
    fn a_loss_report_names_the_phone_the_sim_to_block_and_a_late_report() {
        let at: DateTime<Utc> = "2026-11-20T08:00:00Z".parse().expect("t");
        let facts = LossFacts {
            serial: "R58N12ABCDE",
            provider: "Omsorg AB",
            stolen: true,
            discovered_at: at,
            late: true,
            sim: Some("89460000000000000018"),
        };
        let sv = loss_report(&facts, chrono_tz::Europe::Stockholm, Language::Sv);
        assert!(sv.subject.contains("R58N12ABCDE") && sv.subject.contains("stulen"));
        assert!(sv.body.contains("89460000000000000018"), "{}", sv.body);
        assert!(sv.body.contains("48 timmar"), "{}", sv.body);
        let en = loss_report(
            &LossFacts {
                late: false,
                sim: None,
                ..facts
            },
            chrono_tz::Europe::Stockholm,
            Language::En,
        );
        assert!(
            !en.body.contains("48 hours") && !en.body.contains("SIM"),
            "{}",
            en.body
        );
        assert!(
            lost_mode_message(&"x".repeat(300), Language::Sv)
                .chars()
                .count()
                <= 200
        );
    }
}
