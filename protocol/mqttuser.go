package protocol

import "strings"

// SiteMQTTUser is a site's broker username, "org/site": the agent logs in
// with it, and the broker's ACL reads the site back from it
// (ParseSiteMQTTUser). Both ids are checked with ValidOrgID and ValidSiteID,
// neither of which admits "/", so the split is unambiguous.
func SiteMQTTUser(org, site string) string { return org + "/" + site }

// ParseSiteMQTTUser is the inverse of SiteMQTTUser: ok only for a valid
// organisation and site id.
func ParseSiteMQTTUser(user string) (org, site string, ok bool) {
	org, site, ok = strings.Cut(user, "/")
	if !ok || !ValidOrgID(org) || !ValidSiteID(site) {
		return "", "", false
	}
	return org, site, true
}
