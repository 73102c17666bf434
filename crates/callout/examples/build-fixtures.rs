//! Builds the C test callouts and prints where they are: the Linux directory on the first line,
//! the Windows (mingw-w64) directory on the second when that compiler is installed.
//! Usage: `cargo run -q -p calloutd-callout --example build-fixtures`.

use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{}",
        calloutd_callout::fixtures::build_all()?.display()
    )?;
    if let Some(windows) = calloutd_callout::fixtures::build_windows()? {
        writeln!(out, "{}", windows.display())?;
    }
    Ok(())
}
