/* The example host's inbox page (plays Omnichannel). The Deal & Ticket component itself
 * comes in through the widget's embed.js and the page's markup; everything here is the
 * demo around it, one module per concern. */

import { initActivityLog } from "./activity-log.js";
import { initConversation } from "./conversation.js";
import { initDealTicket } from "./deal-ticket.js";
import { initInfobar } from "./infobar.js";
import { initOmnichannelEvents } from "./omnichannel-events.js";
import { initOmnichannelWatch } from "./omnichannel-watch.js";
import { initQa } from "./qa.js";
import { initSimulator } from "./simulator.js";

initConversation();
initInfobar();
initDealTicket();
initQa();
initActivityLog();
initSimulator();
initOmnichannelEvents();
initOmnichannelWatch();
