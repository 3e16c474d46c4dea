//! Vendor profiles: the identity and the quirks of the modems users actually own
//! (docs/at-sms.md §6 and §7.11).

use std::fmt;
use std::str::FromStr;

/// Which modem the mock pretends to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// A well-behaved 27.005 modem.
    Generic,
    /// Huawei sticks (E3131, E3372 "stick" firmware): indexes from 0, `^RSSI` noise, `COMMAND
    /// NOT SUPPORT`, unquoted LAC/CI.
    Huawei,
    /// SIMCom SIM800: boot banners `RDY`, `Call Ready`, `SMS Ready`.
    Sim800,
    /// Quectel EC25/EG25: `RDY`, `+QUSIM: 1`.
    Quectel,
    /// Wavecom: `+CPIN: READY` without a final OK, `+CME ERROR: 515` after `AT+CFUN=1`.
    Wavecom,
    /// Qualcomm-based sticks: advertise CNMI ds=1 and reject it.
    Qualcomm,
}

impl Profile {
    /// Every profile, for tests and help texts.
    pub const ALL: [Profile; 6] = [
        Profile::Generic,
        Profile::Huawei,
        Profile::Sim800,
        Profile::Quectel,
        Profile::Wavecom,
        Profile::Qualcomm,
    ];

    /// The profile's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Generic => "generic",
            Profile::Huawei => "huawei",
            Profile::Sim800 => "sim800",
            Profile::Quectel => "quectel",
            Profile::Wavecom => "wavecom",
            Profile::Qualcomm => "qualcomm",
        }
    }

    /// The first storage index: Huawei counts from 0 (gammu's `F_SMS_LOCATION_0`).
    pub fn index_base(self) -> usize {
        match self {
            Profile::Huawei => 0,
            _ => 1,
        }
    }

    /// `AT+CGMI`
    pub fn manufacturer(self) -> &'static str {
        match self {
            Profile::Generic => "smsrelay",
            Profile::Huawei => "huawei",
            Profile::Sim800 => "SIMCOM_Ltd",
            Profile::Quectel => "Quectel",
            Profile::Wavecom => "WAVECOM MODEM",
            Profile::Qualcomm => "QUALCOMM INCORPORATED",
        }
    }

    /// `AT+CGMM`
    pub fn model(self) -> &'static str {
        match self {
            Profile::Generic => "MockModem",
            Profile::Huawei => "E3131",
            Profile::Sim800 => "SIMCOM_SIM800L",
            Profile::Quectel => "EC25",
            Profile::Wavecom => "MULTIBAND  900E  1800",
            Profile::Qualcomm => "MF823",
        }
    }

    /// `AT+CGMR`
    pub fn revision(self) -> &'static str {
        match self {
            Profile::Generic => "1.0.0",
            Profile::Huawei => "21.158.00.00.143",
            Profile::Sim800 => "1418B04SIM800L24",
            Profile::Quectel => "EC25EFAR06A06M4G",
            Profile::Wavecom => "641b09gg.Q2403A 1320676 061804 14:38",
            Profile::Qualcomm => "BD_MF823V1.0.0B06",
        }
    }

    /// `AT+CGSN`: an IMEI from the test range.
    pub fn imei(self) -> &'static str {
        "350000000000006"
    }

    /// `AT+CIMI`: test network MCC 001, MNC 01.
    pub fn imsi(self) -> &'static str {
        "001010123456789"
    }

    /// `AT+CNUM`: the SIM's own number, from the range Ofcom keeps for drama.
    pub fn own_number(self) -> &'static str {
        "+447700900999"
    }

    /// `AT+CCID` and friends.
    pub fn iccid(self) -> &'static str {
        "8900101234567890123"
    }

    /// Storages `AT+CPMS=?` offers.
    pub fn memories(self) -> Vec<&'static str> {
        match self {
            Profile::Quectel | Profile::Qualcomm => vec!["ME", "MT", "SM", "SR"],
            _ => vec!["ME", "SM"],
        }
    }

    /// Where `CNMI ds=2` stores status reports.
    pub fn report_memory(self) -> &'static str {
        if self.memories().contains(&"SR") {
            "SR"
        } else {
            "SM"
        }
    }

    /// `AT+CMGF` after a reset: most modems boot in PDU mode, SIM800 in text mode.
    pub fn default_cmgf(self) -> u8 {
        match self {
            Profile::Sim800 => 1,
            _ => 0,
        }
    }

    /// Lines printed at boot (docs/at-sms.md §6 "Banners and noise").
    pub fn banners(self) -> &'static [&'static str] {
        match self {
            Profile::Generic => &[],
            Profile::Huawei => &["^BOOT:27710117,0,0,0,75", "^SIMST:1"],
            Profile::Sim800 => &["RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"],
            Profile::Quectel => &["RDY", "+CFUN: 1", "+QUSIM: 1", "+CPIN: READY", "SMS DONE"],
            Profile::Wavecom => &["+WIND: 4"],
            Profile::Qualcomm => &["+ZUSIMR:2"],
        }
    }

    /// Periodic unsolicited noise for a signal level.
    pub fn noise(self, rssi: u8) -> Vec<String> {
        match self {
            Profile::Huawei => vec![format!("^RSSI:{rssi}"), "^HCSQ:\"LTE\",59,50,161,24".into()],
            Profile::Quectel => vec!["+QIND: \"csq\",21,99".into()],
            _ => vec![],
        }
    }

    /// Whether unknown commands get `COMMAND NOT SUPPORT` (Huawei) rather than `ERROR`.
    pub fn says_not_supported(self) -> bool {
        self == Profile::Huawei
    }

    /// Wavecom sends `+CPIN: READY` with no final OK.
    pub fn cpin_without_ok(self) -> bool {
        self == Profile::Wavecom
    }

    /// Whether the SIM's PIN attempts come from Huawei's `AT^CPIN?` instead of the standard
    /// `AT+CPINR` (older Huawei stick firmware has only the former).
    pub fn huawei_pin_counter(self) -> bool {
        self == Profile::Huawei
    }

    /// Qualcomm rejects `AT+CNMI=…,1,…` although `=?` offers it.
    pub fn rejects_cnmi_ds1(self) -> bool {
        self == Profile::Qualcomm
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(text: &str) -> Result<Profile, String> {
        Profile::ALL
            .into_iter()
            .find(|profile| profile.name().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
                format!("unknown profile {text:?}; one of {}", names.join(", "))
            })
    }
}
