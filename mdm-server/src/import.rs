//! Importing a supplier's delivery list (CSV). All or nothing: a file with any bad row imports
//! nothing and every bad row is reported with its line number and reason. Re-importing the same
//! file adds nothing: devices are matched on serial number.

use chrono::NaiveDate;
use std::collections::HashMap;
use std::io::Read;

use crate::domain::audit::AuditEvent;
use crate::domain::device::{check_warranty, Imei, Platform, Serial};
use crate::domain::organisation::optional_text;
use crate::store::{DeviceModel, ImportSummary, NewDevice, Store, StoreError};

/// The columns a delivery list has; `purchase_date`, `warranty_end` and `supplier` may be empty.
pub const COLUMNS: [&str; 7] = [
    "serial",
    "imei",
    "platform",
    "model",
    "purchase_date",
    "warranty_end",
    "supplier",
];

/// A file larger than this is refused before it is read: ten times the largest delivery seen.
pub const MAX_ROWS: usize = 1_000_000;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("the file cannot be read as CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("the header must name the columns {expected}; found {found}")]
    Header { expected: String, found: String },
    #[error("{}; nothing was imported", rows_at_fault(.0))]
    Rows(Vec<RowError>),
    #[error("the file has more than {MAX_ROWS} rows")]
    TooLarge,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// "2 rows have errors (3 in all)": rows, not errors, are counted, as a row can have several.
pub fn rows_at_fault(errors: &[RowError]) -> String {
    let rows = errors
        .iter()
        .map(|e| e.line)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    match (rows, errors.len()) {
        (1, 1) => "1 row has an error".to_string(),
        (1, all) => format!("1 row has errors ({all} in all)"),
        (rows, all) if rows == all => format!("{rows} rows have errors"),
        (rows, all) => format!("{rows} rows have errors ({all} in all)"),
    }
}

/// Parses and checks every row against the catalogue and the devices already registered.
pub async fn validate(
    input: impl Read,
    models: &[DeviceModel],
    store: &dyn Store,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Vec<NewDevice>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_reader(input);
    let headers = reader.headers()?.clone();
    let found: Vec<String> = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
    if found != COLUMNS {
        return Err(ImportError::Header {
            expected: COLUMNS.join(","),
            found: found.join(","),
        });
    }
    let mut errors = Vec::new();
    let mut devices = Vec::new();
    let mut lines = Vec::new();
    let mut serial_line: HashMap<String, u64> = HashMap::new();
    let mut imei_line: HashMap<String, u64> = HashMap::new();
    for (index, record) in reader.records().enumerate() {
        if index >= MAX_ROWS {
            return Err(ImportError::TooLarge);
        }
        let record = match record {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(index as u64 + 2, |p| p.line());
                errors.push(RowError {
                    line,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        let line = record.position().map_or(index as u64 + 2, |p| p.line());
        match parse_row(&record, models) {
            Ok(device) => {
                let mut duplicate = false;
                if let Some(first) = serial_line.insert(device.serial.as_str().to_string(), line) {
                    errors.push(RowError {
                        line,
                        reason: format!("serial {} is also on line {first}", device.serial),
                    });
                    duplicate = true;
                }
                if let Some(first) = imei_line.insert(device.imei.as_str().to_string(), line) {
                    errors.push(RowError {
                        line,
                        reason: format!("IMEI {} is also on line {first}", device.imei),
                    });
                    duplicate = true;
                }
                if !duplicate {
                    lines.push(line);
                    devices.push(device);
                }
            }
            Err(reasons) => {
                errors.extend(reasons.into_iter().map(|reason| RowError { line, reason }))
            }
        }
        if index % 1000 == 0 {
            progress(index as u64);
        }
    }
    progress((devices.len() + errors.len()) as u64);
    check_against_registered(&devices, &lines, store, &mut errors).await?;
    if errors.is_empty() {
        Ok(devices)
    } else {
        errors.sort_by_key(|e| e.line);
        Err(ImportError::Rows(errors))
    }
}

fn parse_row(record: &csv::StringRecord, models: &[DeviceModel]) -> Result<NewDevice, Vec<String>> {
    let field = |i: usize| record.get(i).unwrap_or("");
    let mut reasons = Vec::new();
    fn keep<T>(reasons: &mut Vec<String>, r: Result<T, crate::domain::DomainError>) -> Option<T> {
        r.map_err(|e| reasons.push(e.to_string())).ok()
    }
    let serial = keep(&mut reasons, Serial::parse(field(0)));
    let imei = keep(&mut reasons, Imei::parse(field(1)));
    let platform = keep(&mut reasons, Platform::parse(field(2)));
    let date = |i: usize, name: &str, reasons: &mut Vec<String>| -> Option<NaiveDate> {
        let text = field(i);
        if text.is_empty() {
            return None;
        }
        text.parse()
            .map_err(|_| reasons.push(format!("{name}: '{text}' is not a date (YYYY-MM-DD)")))
            .ok()
    };
    let purchase_date = date(4, "purchase_date", &mut reasons);
    let warranty_end = date(5, "warranty_end", &mut reasons);
    if let Err(e) = check_warranty(purchase_date, warranty_end) {
        reasons.push(e.to_string());
    }
    let model_id = platform.and_then(|p| match DeviceModel::find_in(models, p, field(3)) {
        Ok(m) => Some(m.id),
        Err(message) => {
            reasons.push(format!("model: {message}"));
            None
        }
    });
    let supplier = keep(&mut reasons, optional_text("supplier", Some(field(6)), 200)).flatten();
    match (serial, imei, model_id, platform) {
        (Some(serial), Some(imei), Some(model_id), Some(platform)) if reasons.is_empty() => {
            Ok(NewDevice {
                serial,
                imei,
                model_id,
                platform,
                provider_id: None,
                purchase_date,
                warranty_end,
                supplier,
            })
        }
        _ => Err(reasons),
    }
}

/// A serial already registered must carry the same IMEI (then the row is a re-import), and an
/// IMEI already registered must belong to the same serial.
async fn check_against_registered(
    devices: &[NewDevice],
    lines: &[u64],
    store: &dyn Store,
    errors: &mut Vec<RowError>,
) -> Result<(), ImportError> {
    let serials: Vec<String> = devices
        .iter()
        .map(|d| d.serial.as_str().to_string())
        .collect();
    let imeis: Vec<String> = devices
        .iter()
        .map(|d| d.imei.as_str().to_string())
        .collect();
    let by_serial: HashMap<String, String> = store
        .registered_serials(&serials)
        .await?
        .into_iter()
        .collect();
    let by_imei: HashMap<String, String> =
        store.registered_imeis(&imeis).await?.into_iter().collect();
    for (device, line) in devices.iter().zip(lines) {
        if let Some(imei) = by_serial.get(device.serial.as_str()) {
            if imei != device.imei.as_str() {
                errors.push(RowError {
                    line: *line,
                    reason: format!(
                        "serial {} is already registered with IMEI {imei}",
                        device.serial
                    ),
                });
            }
        }
        if let Some(serial) = by_imei.get(device.imei.as_str()) {
            if serial != device.serial.as_str() {
                errors.push(RowError {
                    line: *line,
                    reason: format!(
                        "IMEI {} is already registered to serial {serial}",
                        device.imei
                    ),
                });
            }
        }
    }
    Ok(())
}

/// What an import is doing, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportPhase {
    Checking,
    Writing,
}

/// Validates and imports a delivery list as one transaction, recorded as `event` (the command
/// line's or the API caller's). `progress` hears the phase and how many rows it has done.
pub async fn import_csv(
    input: impl Read,
    store: &dyn Store,
    now: chrono::DateTime<chrono::Utc>,
    event: AuditEvent,
    progress: &(dyn Fn(ImportPhase, u64) + Sync),
) -> Result<ImportSummary, ImportError> {
    let models = store.list_models().await?;
    let devices = validate(input, &models, store, &|n| {
        progress(ImportPhase::Checking, n)
    })
    .await?;
    Ok(store
        .import_devices(&devices, now, event, &|n| progress(ImportPhase::Writing, n))
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_summary_counts_rows_at_fault_not_their_errors() {
        let at = |line| RowError {
            line,
            reason: "bad".into(),
        };
        assert_eq!(rows_at_fault(&[at(2)]), "1 row has an error");
        assert_eq!(
            rows_at_fault(&[at(2), at(2)]),
            "1 row has errors (2 in all)"
        );
        assert_eq!(rows_at_fault(&[at(2), at(3)]), "2 rows have errors");
        assert_eq!(
            rows_at_fault(&[at(2), at(2), at(3)]),
            "2 rows have errors (3 in all)"
        );
    }
}
