package protocol

// The agent's environment (DESIGN.md section 9): the only way an agent is
// configured, because a RouterOS container is configured through its
// environment list. The control plane writes these names (enroll, the
// enrollment route, the RouterOS script) and the agent's config loader reads
// them, so they live here, beside the other things both sides must agree on.
const (
	EnvMQTTURL          = "RAMPART_MQTT_URL"
	EnvMQTTCA           = "RAMPART_MQTT_CA"
	EnvOrgID            = "RAMPART_ORG_ID"
	EnvSiteID           = "RAMPART_SITE_ID"
	EnvSiteSecret       = "RAMPART_SITE_SECRET"
	EnvRouterOSAddr     = "RAMPART_ROUTEROS_ADDR"
	EnvRouterOSUser     = "RAMPART_ROUTEROS_USER"
	EnvRouterOSPassword = "RAMPART_ROUTEROS_PASSWORD"
	EnvRouterOSTLS      = "RAMPART_ROUTEROS_TLS"
	EnvStateDir         = "RAMPART_STATE_DIR"
	EnvMetricsAddr      = "RAMPART_METRICS_ADDR"
	EnvResyncInterval   = "RAMPART_RESYNC_INTERVAL"
	EnvWANList          = "RAMPART_WAN_LIST"
)
