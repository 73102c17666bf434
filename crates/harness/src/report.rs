//! The readable report (one line per step) and the JUnit XML file.

use std::fmt::Write as _;

use crate::run::ScenarioReport;
use crate::scenario::ScenarioError;

/// The report of one scenario: a header, one line per step, the first failure in full.
pub fn text(report: &ScenarioReport) -> String {
    let mut out = String::new();
    let verdict = if report.is_skipped() {
        "skipped"
    } else if report.passed() {
        "ok"
    } else {
        "FAILED"
    };
    let _ = writeln!(
        out,
        "scenario {} ({}): {verdict} in {} ms",
        report.name,
        report.path.display(),
        report.elapsed.as_millis()
    );
    if !report.loaded.is_empty() {
        let _ = writeln!(out, "  {}", report.loaded);
    }
    if let Some(e) = &report.setup_error {
        let _ = writeln!(out, "  setup failed: {e}");
    }
    if let Some(why) = &report.skipped {
        let _ = writeln!(out, "  not run: {why}");
    }
    if let Some(failure) = &report.service_failure {
        let _ = writeln!(out, "  FAIL {failure}");
    }
    let mut shown_failure = false;
    for step in &report.steps {
        let mark = if step.failure.is_some() {
            "FAIL"
        } else {
            "ok  "
        };
        let _ = writeln!(
            out,
            "  {mark} {:>3} line {:<4} {}  [{}]",
            step.number, step.line, step.summary, step.hooks
        );
        if let (Some(failure), false) = (&step.failure, shown_failure) {
            let _ = writeln!(out, "{failure}");
            shown_failure = true;
        }
    }
    out
}

/// The invalid-scenario report: every rule broken, `file:line: rule`.
pub fn invalid(errors: &[ScenarioError]) -> String {
    errors.iter().map(|e| format!("{e}\n")).collect()
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one `<testcase>` per scenario (failed ones carry the first failure), and one
/// `<error>` test case per invalid scenario file.
pub fn junit(
    reports: &[ScenarioReport],
    invalid: &[(std::path::PathBuf, Vec<ScenarioError>)],
) -> String {
    let failures = reports.iter().filter(|r| !r.passed()).count();
    let skipped = reports.iter().filter(|r| r.is_skipped()).count();
    let total_secs: f64 = reports.iter().map(|r| r.elapsed.as_secs_f64()).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"calloutd test\" tests=\"{}\" failures=\"{failures}\" errors=\"{}\" skipped=\"{skipped}\" time=\"{total_secs:.3}\">",
        reports.len() + invalid.len(),
        invalid.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"calloutd scenarios\" tests=\"{}\" failures=\"{failures}\" errors=\"{}\" skipped=\"{skipped}\" time=\"{total_secs:.3}\">",
        reports.len() + invalid.len(),
        invalid.len()
    );
    for report in reports {
        let _ = write!(
            out,
            "    <testcase classname=\"calloutd.scenario\" name=\"{}\" file=\"{}\" time=\"{:.3}\"",
            xml_escape(&report.name),
            xml_escape(&report.path.display().to_string()),
            report.elapsed.as_secs_f64()
        );
        if let Some(why) = &report.skipped {
            let _ = writeln!(
                out,
                ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                xml_escape(why)
            );
            continue;
        }
        match report.first_failure() {
            None => out.push_str("/>\n"),
            Some(failure) => {
                let first_line = failure.lines().next().unwrap_or_default();
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{}\">{}</failure>\n      <system-out>{}</system-out>\n    </testcase>",
                    xml_escape(first_line),
                    xml_escape(&failure),
                    xml_escape(&text(report))
                );
            }
        }
    }
    for (path, errors) in invalid {
        let _ = writeln!(
            out,
            "    <testcase classname=\"calloutd.scenario\" name=\"{}\" file=\"{}\">\n      <error message=\"invalid scenario\">{}</error>\n    </testcase>",
            xml_escape(&path.display().to_string()),
            xml_escape(&path.display().to_string()),
            xml_escape(&self::invalid(errors))
        );
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::StepReport;
    use std::time::Duration;

    fn report(failure: Option<&str>) -> ScenarioReport {
        ScenarioReport {
            name: "a <b>".into(),
            path: "x.toml".into(),
            loaded: "no callout".into(),
            start_calls: Vec::new(),
            steps: vec![StepReport {
                number: 1,
                line: 7,
                summary: "pc discover -> OFFER 198.18.0.10".into(),
                hooks: String::new(),
                calls: Vec::new(),
                failure: failure.map(str::to_string),
            }],
            setup_error: None,
            skipped: None,
            service_failure: None,
            elapsed: Duration::from_millis(3),
        }
    }

    #[test]
    fn junit_has_one_testcase_per_scenario_with_the_failure_escaped() {
        let xml = junit(
            &[
                report(None),
                report(Some("  expected reply: ACK\n  got: none")),
            ],
            &[],
        );
        assert_eq!(xml.matches("<testcase ").count(), 2);
        assert!(xml.contains("name=\"a &lt;b&gt;\""));
        assert!(xml.contains("failures=\"1\""));
        assert!(
            xml.contains(
                "<failure message=\"step 1 (x.toml:7): pc discover -&gt; OFFER 198.18.0.10\">"
            ),
            "{xml}"
        );
    }

    #[test]
    fn the_text_report_has_a_line_per_step_and_the_failure_under_it() {
        let text = text(&report(Some("  expected reply: ACK")));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("scenario a <b> (x.toml): FAILED"));
        assert!(lines[2].starts_with("  FAIL   1 line 7"));
        assert_eq!(lines[3], "  expected reply: ACK");
    }
}
