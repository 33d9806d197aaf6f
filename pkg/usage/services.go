package usage

import "strings"

// Service is the FOCUS service classification of a charge.
type Service struct {
	Name        string // ServiceName
	Category    string // ServiceCategory, from the FOCUS list
	Subcategory string // ServiceSubcategory, from the FOCUS list
	Publisher   string // PublisherName as the toolkit knows it
	Model       string // IaaS, PaaS or SaaS (x_ServiceModel)
}

// ResourceTypeOf returns the lower-case provider namespace and type of an Azure resource URI:
// ".../providers/Microsoft.Sql/servers/s1/databases/db1" → "microsoft.sql/servers/databases".
// The last "providers" segment wins so extension resources get their own type. URIs without
// a provider name a resource group or subscription; anything else returns "".
func ResourceTypeOf(uri string) string {
	var buf [24]string // the non-empty segments; a URI rarely has more, and append copes
	segs := buf[:0]
	for s := range strings.SplitSeq(strings.ToLower(strings.TrimSpace(uri)), "/") {
		if s != "" {
			segs = append(segs, s)
		}
	}
	p := -1
	for i, s := range segs {
		if s == "providers" {
			p = i
		}
	}
	if p >= 0 && p+2 < len(segs) {
		var b strings.Builder
		b.WriteString(segs[p+1])
		for i := p + 2; i < len(segs); i += 2 { // type, name, type, name, ...
			b.WriteByte('/')
			b.WriteString(segs[i])
		}
		return b.String()
	}
	switch {
	case len(segs) == 4 && segs[0] == "subscriptions" && segs[2] == "resourcegroups":
		return "microsoft.resources/resourcegroups"
	case len(segs) == 2 && segs[0] == "subscriptions":
		return "microsoft.resources/subscriptions"
	}
	return ""
}

// ServiceOfType looks a resource type up in the toolkit's Services table, dropping trailing
// child types until one is known ("microsoft.web/sites/slots" → "microsoft.web/sites").
func (l *Lookups) ServiceOfType(rt string) (Service, bool) {
	for rt != "" {
		if s, ok := l.services[rt]; ok {
			return s, true
		}
		i := strings.LastIndexByte(rt, '/')
		if i < 0 || strings.Count(rt, "/") < 2 {
			return Service{}, false
		}
		rt = rt[:i]
	}
	return Service{}, false
}

// fallbackServices classifies rows without a resource URI (licences, v1 aggregates, support)
// by meter category or product name. Matching is by case-insensitive prefix, first hit wins,
// so longer prefixes come first. Names follow the toolkit's Services table (disks are
// "Virtual Machines" there), so a v1 row and a v3 row of one resource classify alike. Categories and subcategories are from the FOCUS 1.2 lists,
// which have no "SaaS" category: Microsoft 365-style licences are Business Applications with
// ServiceModel SaaS, as the toolkit classifies Teams and Power Platform.
var fallbackServices = []struct {
	prefix string
	svc    Service
}{
	{"virtual machines licenses", Service{"Virtual Machines", "Compute", "Virtual Machines", "Microsoft", "IaaS"}},
	{"virtual machines", Service{"Virtual Machines", "Compute", "Virtual Machines", "Microsoft", "IaaS"}},
	{"virtual network", Service{"Virtual Network", "Networking", "Network Infrastructure", "Microsoft", "IaaS"}},
	{"bandwidth", Service{"Bandwidth", "Networking", "Network Connectivity", "Microsoft", "IaaS"}},
	{"load balancer", Service{"Load Balancer", "Networking", "Application Networking", "Microsoft", "IaaS"}},
	{"vpn gateway", Service{"Virtual Network", "Networking", "Network Infrastructure", "Microsoft", "IaaS"}},
	{"content delivery network", Service{"Content Delivery Network", "Networking", "Content Delivery", "Microsoft", "PaaS"}},
	{"premium ssd managed disks", Service{"Virtual Machines", "Compute", "Virtual Machines", "Microsoft", "IaaS"}},
	{"standard ssd managed disks", Service{"Virtual Machines", "Compute", "Virtual Machines", "Microsoft", "IaaS"}},
	{"standard hdd managed disks", Service{"Virtual Machines", "Compute", "Virtual Machines", "Microsoft", "IaaS"}},
	{"storage", Service{"Storage Accounts", "Storage", "Storage Platforms", "Microsoft", "IaaS"}},
	{"backup", Service{"Backup", "Storage", "Backup Storage", "Microsoft", "PaaS"}},
	{"sql database", Service{"Azure SQL Database", "Databases", "Relational Databases", "Microsoft", "PaaS"}},
	{"azure cosmos db", Service{"Cosmos DB", "Databases", "NoSQL Databases", "Microsoft", "PaaS"}},
	{"redis cache", Service{"Azure Cache for Redis", "Databases", "Caching", "Microsoft", "PaaS"}},
	{"azure app service", Service{"Azure App Service", "Web", "Application Platforms", "Microsoft", "PaaS"}},
	{"functions", Service{"Functions", "Compute", "Serverless Compute", "Microsoft", "PaaS"}},
	{"log analytics", Service{"Azure Monitor", "Management and Governance", "Observability", "Microsoft", "SaaS"}},
	{"azure monitor", Service{"Azure Monitor", "Management and Governance", "Observability", "Microsoft", "SaaS"}},
	{"key vault", Service{"Key Vault", "Security", "Secret Management", "Microsoft", "PaaS"}},
	{"microsoft defender", Service{"Microsoft Defender for Cloud", "Security", "Security Posture Management", "Microsoft", "SaaS"}},
	{"azure support", Service{"Azure Support", "Other", "Other (Other)", "Microsoft", "SaaS"}},
	{"microsoft 365", Service{"Microsoft 365", "Business Applications", "Productivity and Collaboration", "Microsoft", "SaaS"}},
	{"office 365", Service{"Office 365", "Business Applications", "Productivity and Collaboration", "Microsoft", "SaaS"}},
	{"exchange online", Service{"Exchange Online", "Business Applications", "Productivity and Collaboration", "Microsoft", "SaaS"}},
	{"microsoft teams", Service{"Microsoft Teams", "Business Applications", "Productivity and Collaboration", "Microsoft", "SaaS"}},
	{"teams", Service{"Microsoft Teams", "Business Applications", "Productivity and Collaboration", "Microsoft", "SaaS"}},
	{"dynamics 365", Service{"Dynamics 365", "Business Applications", "Other (Business Applications)", "Microsoft", "SaaS"}},
	{"power bi", Service{"Power BI", "Analytics", "Business Intelligence", "Microsoft", "SaaS"}},
	{"windows 365", Service{"Windows 365", "Compute", "End User Computing", "Microsoft", "SaaS"}},
	{"enterprise mobility", Service{"Enterprise Mobility + Security", "Identity", "Identity and Access Management", "Microsoft", "SaaS"}},
	{"microsoft entra", Service{"Microsoft Entra ID", "Identity", "Identity and Access Management", "Microsoft", "SaaS"}},
	{"azure active directory", Service{"Microsoft Entra ID", "Identity", "Identity and Access Management", "Microsoft", "SaaS"}},
	{"microsoft intune", Service{"Microsoft Intune", "Management and Governance", "Endpoint Management", "Microsoft", "SaaS"}},
	{"visio", Service{"Visio", "Business Applications", "Productivity and Collaboration", "Microsoft", "SaaS"}},
	{"project", Service{"Project", "Business Applications", "Productivity and Collaboration", "Microsoft", "SaaS"}},
}

// ServiceFor classifies a charge: the resource type from the URI via the toolkit table, then
// our fallback by meter category, then by product name; else ServiceName is the meter category
// or product name as given (FOCUS ServiceName is never null) in category Other.
func (l *Lookups) ServiceFor(resourceURI, meterCategory, productName string) Service {
	if s, ok := l.ServiceOfType(ResourceTypeOf(resourceURI)); ok {
		return s
	}
	for _, name := range []string{meterCategory, productName} {
		n := strings.ToLower(strings.TrimSpace(name))
		if n == "" {
			continue
		}
		for _, f := range fallbackServices {
			if strings.HasPrefix(n, f.prefix) {
				return f.svc
			}
		}
		// v1 product names for VM series ("Dv3 Series VM") end in "VM".
		if strings.HasSuffix(n, " vm") || strings.HasSuffix(n, " vms") {
			return fallbackServices[1].svc
		}
	}
	name := strings.TrimSpace(meterCategory)
	if name == "" {
		name = strings.TrimSpace(productName)
	}
	if name == "" {
		name = "Other"
	}
	return Service{Name: name, Category: "Other", Subcategory: "Other (Other)", Publisher: "Microsoft"}
}
