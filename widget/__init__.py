"""CRM embedded Deal & Ticket component: record API, live iframe component, CRM pages."""
