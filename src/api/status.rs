//! `/v1/status`: the modems (`modem` the first, as before several; `modems` every one), the outbox, the database, the clock and the webhooks at a glance.

use axum::extract::State;
use axum::response::{IntoResponse, Response};

use super::views::{
    ClockView, ModemView, MqttView, QueueView, StatusView, StoreView, WebhookBrief,
};
use super::{ApiError, Shared, webhook_status, with_store};

/// `GET /v1/status`.
pub async fn status(State(state): State<Shared>) -> Result<Response, ApiError> {
    let slots = state.gateway.modems();
    let statuses: Vec<_> = slots.iter().map(|slot| slot.handle.status()).collect();
    let modem = state.modem.status();
    let outbox = with_store(&state, |store| Ok(store.outbox_len())).await?;
    let webhooks = webhook_status(&state).await?;
    let store_failure = state.gateway.store().failure();
    let mqtt = state.mqtt.as_ref().map(|link| {
        let depth = webhooks
            .iter()
            .find(|webhook| webhook.name == crate::config::MQTT_ENDPOINT)
            .map_or(0, |webhook| webhook.queue_depth);
        MqttView::new(link.status(), depth)
    });
    let activity = state.gateway.sim_activity();
    let view = StatusView {
        version: env!("CARGO_PKG_VERSION"),
        uptime_seconds: state.started.elapsed().as_secs(),
        modem: ModemView::new(&modem),
        modems: statuses
            .iter()
            .zip(slots)
            .map(|(status, slot)| ModemView::named(status, slot))
            .collect(),
        queue: QueueView { outbox },
        store: StoreView::new(store_failure.as_ref()),
        clock: ClockView::new(&state.dispatcher.clock_status()),
        webhooks: webhooks.iter().map(WebhookBrief::from).collect(),
        mqtt,
        last_call: activity.last_call,
        last_balance: activity.last_balance,
        balances: activity.balances,
    };
    Ok(axum::Json(view).into_response())
}
