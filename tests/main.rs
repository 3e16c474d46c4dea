//! One integration test binary; each module drives a layer from outside the crate.

mod at_against_mock;
mod at_properties;
mod at_session;
mod at_transcripts;
mod config_cli;
mod crash;
mod daemon;
mod daemon_in_process;
mod gateway;
mod health;
mod mock_gammu;
mod mock_modem;
mod mock_properties;
mod modem_driver;
mod modem_init;
mod pdu_cli;
mod pdu_properties;
mod pdu_vectors;
mod receiver_formats;
mod scripted_modem;
mod sim_pin;
mod support;
mod systemd_unit;
mod webhook_delivery;
mod webhook_signatures;
