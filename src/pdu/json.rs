//! The JSON view of a decoded PDU, as `smsrelay pdu decode` prints it. Field names follow the
//! 23.040 field they show; values that are octets in the PDU are shown as `0x..` hex.

use serde_json::{Map, Value, json};

use super::{
    Address, Body, Deliver, Pdu, StatusClass, StatusReport, Submit, Tpdu, UserData, Validity,
    encode,
};

/// The whole PDU: SMSC and TPDU fields in one object.
pub fn pdu(pdu: &Pdu) -> Value {
    let mut object = Map::new();
    object.insert("type".into(), json!(pdu.tpdu.kind()));
    object.insert("smsc".into(), optional_address(pdu.smsc.as_ref()));
    if let Value::Object(fields) = tpdu(&pdu.tpdu) {
        object.extend(fields);
    }
    Value::Object(object)
}

/// The TPDU fields alone.
pub fn tpdu(tpdu: &Tpdu) -> Value {
    let mut object = Map::new();
    object.insert("type".into(), json!(tpdu.kind()));
    object.insert("first_octet".into(), hex_octet(tpdu.first_octet()));
    match tpdu {
        Tpdu::Deliver(deliver) => deliver_fields(&mut object, deliver),
        Tpdu::Submit(submit) => submit_fields(&mut object, submit),
        Tpdu::StatusReport(report) => status_report_fields(&mut object, report),
    }
    if let Ok(octets) = tpdu.encode() {
        object.insert("tpdu_octets".into(), json!(octets.len()));
        // For a SUBMIT that count is also what goes into AT+CMGS=<length>.
        if let Tpdu::Submit(_) = tpdu {
            object.insert("cmgs_length".into(), json!(octets.len()));
        }
    }
    Value::Object(object)
}

fn deliver_fields(object: &mut Map<String, Value>, deliver: &Deliver) {
    address_fields(object, "sender", &deliver.sender);
    object.insert("timestamp".into(), json!(deliver.timestamp.to_string()));
    object.insert(
        "tp_mms_no_more_messages".into(),
        json!(deliver.no_more_messages),
    );
    object.insert(
        "status_report_indication".into(),
        json!(deliver.status_report_indication),
    );
    object.insert("reply_path".into(), json!(deliver.reply_path));
    object.insert("pid".into(), hex_octet(deliver.pid));
    user_data_fields(object, &deliver.user_data, deliver.dcs);
}

fn submit_fields(object: &mut Map<String, Value>, submit: &Submit) {
    address_fields(object, "recipient", &submit.recipient);
    object.insert("message_reference".into(), json!(submit.message_reference));
    object.insert(
        "status_report_requested".into(),
        json!(submit.status_report_request),
    );
    object.insert("reject_duplicates".into(), json!(submit.reject_duplicates));
    object.insert("reply_path".into(), json!(submit.reply_path));
    object.insert(
        "validity".into(),
        json!(submit.validity.as_ref().map(Validity::format_name)),
    );
    let minutes = submit
        .validity
        .as_ref()
        .and_then(Validity::duration)
        .map(|duration| duration.as_secs() / 60);
    object.insert("validity_minutes".into(), json!(minutes));
    if let Some(Validity::Absolute(stamp)) = &submit.validity {
        object.insert("validity_until".into(), json!(stamp.to_string()));
    }
    object.insert("pid".into(), hex_octet(submit.pid));
    user_data_fields(object, &submit.user_data, submit.dcs);
}

fn status_report_fields(object: &mut Map<String, Value>, report: &StatusReport) {
    address_fields(object, "recipient", &report.recipient);
    object.insert("message_reference".into(), json!(report.message_reference));
    object.insert("status".into(), json!(report.status.0));
    object.insert("status_hex".into(), hex_octet(report.status.0));
    object.insert("status_meaning".into(), json!(report.status.to_string()));
    let class = match report.status.class() {
        StatusClass::Delivered => "delivered",
        StatusClass::Pending => "pending",
        StatusClass::PermanentFailure => "permanent_failure",
        StatusClass::TemporaryFailure => "temporary_failure",
    };
    object.insert("status_class".into(), json!(class));
    object.insert("final".into(), json!(report.status.class().is_final()));
    object.insert("timestamp".into(), json!(report.timestamp.to_string()));
    object.insert(
        "discharge_time".into(),
        json!(report.discharge_time.to_string()),
    );
    object.insert(
        "tp_mms_no_more_messages".into(),
        json!(report.no_more_messages),
    );
    object.insert("reports_command".into(), json!(report.reports_command));
    if let Some(pid) = report.pid {
        object.insert("pid".into(), hex_octet(pid));
    }
    if let Some(user_data) = &report.user_data {
        user_data_fields(object, user_data, report.dcs.unwrap_or_default());
    } else if let Some(dcs) = report.dcs {
        object.insert("dcs".into(), hex_octet(dcs.0));
    }
}

fn user_data_fields(object: &mut Map<String, Value>, user_data: &UserData, dcs: super::Dcs) {
    object.insert("dcs".into(), hex_octet(dcs.0));
    let encoding = if dcs.is_compressed() {
        "compressed"
    } else {
        dcs.alphabet().name()
    };
    object.insert("encoding".into(), json!(encoding));
    object.insert(
        "message_class".into(),
        json!(dcs.class().map(|class| class.number())),
    );
    if let Some(waiting) = dcs.message_waiting() {
        object.insert(
            "message_waiting".into(),
            json!({"kind": waiting.kind, "active": waiting.active, "discard": waiting.discard}),
        );
    }
    object.insert("udhi".into(), json!(user_data.header.is_some()));
    if let Some(header) = &user_data.header {
        object.insert(
            "udh_hex".into(),
            json!(hex::encode_upper(header.to_octets())),
        );
        let elements: Vec<Value> = header
            .elements
            .iter()
            .map(|element| json!({"iei": hex_octet(element.iei), "data": hex::encode_upper(&element.data)}))
            .collect();
        object.insert("information_elements".into(), json!(elements));
    }
    let concat = user_data.concat().map(|concat| {
        json!({
            "ref": concat.reference.value(),
            "ref_bits": concat.reference.bits(),
            "part": concat.sequence,
            "total": concat.total,
            "udh_hex": user_data.header.as_ref().map(|udh| hex::encode_upper(udh.to_octets())),
        })
    });
    object.insert("concat".into(), json!(concat));
    match &user_data.body {
        Body::Text(text) => {
            object.insert("text".into(), json!(text));
        }
        Body::Data(bytes) => {
            object.insert("text".into(), Value::Null);
            object.insert("data_hex".into(), json!(hex::encode_upper(bytes)));
        }
    }
    let length = encode::user_data_length(user_data, dcs.alphabet(), dcs.is_compressed());
    object.insert("tp_udl".into(), json!(length));
}

fn address_fields(object: &mut Map<String, Value>, name: &str, address: &Address) {
    object.insert(name.into(), json!(address.to_string()));
    object.insert(format!("{name}_toa"), hex_octet(address.toa));
}

fn optional_address(address: Option<&Address>) -> Value {
    address.map_or(Value::Null, |address| json!(address.to_string()))
}

fn hex_octet(octet: u8) -> Value {
    json!(format!("0x{octet:02X}"))
}
