//! `+CME ERROR` (3GPP TS 27.007 §9.2) and `+CMS ERROR` (TS 27.005 §3.2.5, with the network and
//! TP-FCS causes below 300 from TS 24.011 and TS 23.040) as enums.
//!
//! Unknown numbers keep their raw value, and verbose text (`AT+CMEE=2`) keeps its text, so an
//! error is never lost on its way up.

/// Builds a code enum with its number, its description and the raw fallbacks.
macro_rules! error_codes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $code:literal, $text:literal;)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
            /// A numeric code this table does not name; the number is kept.
            Other(u16),
            /// Verbose text (`AT+CMEE=2`), or an error line that carried no code at all.
            Text(String),
        }

        impl $name {
            /// Maps a numeric code to its variant, keeping unknown numbers.
            pub fn from_code(code: u16) -> Self {
                match code {
                    $($code => Self::$variant,)*
                    other => Self::Other(other),
                }
            }

            /// The numeric code, when the modem gave one.
            pub fn code(&self) -> Option<u16> {
                match self {
                    $(Self::$variant => Some($code),)*
                    Self::Other(code) => Some(*code),
                    Self::Text(_) => None,
                }
            }

            /// A short description, from the spec for known codes.
            pub fn description(&self) -> &str {
                match self {
                    $(Self::$variant => $text,)*
                    Self::Other(_) => "unknown error code",
                    Self::Text(text) if text.is_empty() => "error without a code",
                    Self::Text(text) => text,
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                match self.code() {
                    Some(code) => write!(f, "{code} ({})", self.description()),
                    None => write!(f, "{}", self.description()),
                }
            }
        }
    };
}

error_codes! {
    /// An ME or SIM error, `+CME ERROR: <n>` (TS 27.007 §9.2).
    CmeError {
        /// 0
        PhoneFailure = 0, "phone failure";
        /// 3
        OperationNotAllowed = 3, "operation not allowed";
        /// 4
        OperationNotSupported = 4, "operation not supported";
        /// 10
        SimNotInserted = 10, "SIM not inserted";
        /// 11
        SimPinRequired = 11, "SIM PIN required";
        /// 12
        SimPukRequired = 12, "SIM PUK required";
        /// 13
        SimFailure = 13, "SIM failure";
        /// 14: normal for a few seconds after PIN entry or boot.
        SimBusy = 14, "SIM busy";
        /// 15
        SimWrong = 15, "SIM wrong";
        /// 16
        IncorrectPassword = 16, "incorrect password";
        /// 17
        SimPin2Required = 17, "SIM PIN2 required";
        /// 18
        SimPuk2Required = 18, "SIM PUK2 required";
        /// 20
        MemoryFull = 20, "memory full";
        /// 21
        InvalidIndex = 21, "invalid index";
        /// 22
        NotFound = 22, "not found";
        /// 23
        MemoryFailure = 23, "memory failure";
        /// 30
        NoNetworkService = 30, "no network service";
        /// 31
        NetworkTimeout = 31, "network timeout";
        /// 32
        EmergencyCallsOnly = 32, "network not allowed, emergency calls only";
        /// 100
        Unknown = 100, "unknown";
        /// 515: Wavecom and others after AT+CFUN=1 (vendor-specific).
        DeviceBusy = 515, "device busy";
    }
}

error_codes! {
    /// A message service error, `+CMS ERROR: <n>` (TS 27.005 §3.2.5; below 300 the RP and TP
    /// causes of TS 24.011 and TS 23.040).
    CmsError {
        /// 1
        UnassignedNumber = 1, "unassigned number";
        /// 8
        OperatorBarring = 8, "operator determined barring";
        /// 10
        CallBarred = 10, "call barred";
        /// 21
        TransferRejected = 21, "short message transfer rejected";
        /// 27
        DestinationOutOfService = 27, "destination out of service";
        /// 28
        UnidentifiedSubscriber = 28, "unidentified subscriber";
        /// 29
        FacilityRejected = 29, "facility rejected";
        /// 30
        UnknownSubscriber = 30, "unknown subscriber";
        /// 38
        NetworkOutOfOrder = 38, "network out of order";
        /// 41
        TemporaryFailure = 41, "temporary failure";
        /// 42
        Congestion = 42, "congestion";
        /// 47
        ResourcesUnavailable = 47, "resources unavailable";
        /// 50
        NotSubscribed = 50, "requested facility not subscribed";
        /// 69
        NotImplemented = 69, "requested facility not implemented";
        /// 95
        InvalidMessage = 95, "invalid short message transfer reference value";
        /// 96
        InvalidMandatoryInfo = 96, "invalid mandatory information";
        /// 111
        ProtocolError = 111, "protocol error, unspecified";
        /// 127
        InterworkingUnspecified = 127, "interworking, unspecified";
        /// 192 (TP-FCS 0xC0)
        ScBusy = 192, "SC busy";
        /// 195 (TP-FCS 0xC3)
        InvalidSmeAddress = 195, "invalid SME address";
        /// 196 (TP-FCS 0xC4)
        DestinationBarred = 196, "destination SME barred";
        /// 197 (TP-FCS 0xC5)
        DuplicateRejected = 197, "SM rejected, duplicate SM";
        /// 208 (TP-FCS 0xD0)
        SimStorageFull = 208, "SIM SMS storage full";
        /// 300
        MeFailure = 300, "ME failure";
        /// 301
        ServiceReserved = 301, "SMS service of ME reserved";
        /// 302
        OperationNotAllowed = 302, "operation not allowed";
        /// 303
        OperationNotSupported = 303, "operation not supported";
        /// 304: a wrong AT+CMGS length or a malformed PDU, so our bug.
        InvalidPduParameter = 304, "invalid PDU mode parameter";
        /// 305
        InvalidTextParameter = 305, "invalid text mode parameter";
        /// 310
        SimNotInserted = 310, "SIM not inserted";
        /// 311
        SimPinRequired = 311, "SIM PIN required";
        /// 312
        PhSimPinRequired = 312, "PH-SIM PIN required";
        /// 313
        SimFailure = 313, "SIM failure";
        /// 314
        SimBusy = 314, "SIM busy";
        /// 315
        SimWrong = 315, "SIM wrong";
        /// 316
        SimPukRequired = 316, "SIM PUK required";
        /// 317
        SimPin2Required = 317, "SIM PIN2 required";
        /// 318
        SimPuk2Required = 318, "SIM PUK2 required";
        /// 320
        MemoryFailure = 320, "memory failure";
        /// 321: a stale index; skip it, never loop on it.
        InvalidMemoryIndex = 321, "invalid memory index";
        /// 322
        MemoryFull = 322, "memory full";
        /// 330
        SmscAddressUnknown = 330, "SMSC address unknown";
        /// 331
        NoNetworkService = 331, "no network service";
        /// 332
        NetworkTimeout = 332, "network timeout";
        /// 340
        NoCnmaExpected = 340, "no +CNMA acknowledgement expected";
        /// 500: the catch-all.
        UnknownError = 500, "unknown error";
        /// 512 (vendor: MM establishment failure, or an SMS collision)
        MmEstablishmentFailure = 512, "MM establishment failure (vendor-specific)";
        /// 513 (vendor)
        LowerLayerFailure = 513, "lower layer failure (vendor-specific)";
        /// 514 (vendor)
        VendorCongestion = 514, "congestion (vendor-specific)";
        /// 515 (vendor)
        InitInProgress = 515, "initialisation in progress (vendor-specific)";
    }
}
