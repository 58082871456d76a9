"""Synthetic but realistic feedback for demos, tests and benchmarks; no database, no network.

:func:`generate_demo` invents the accounts of a B2B SaaS vendor ("Tallyboard", a work-management app) and
several thousand feedback items from four sources: Zendesk tickets, Intercom chats, Salesforce call notes
and sales field notes. Every item is composed from per-theme pain points, requests, questions and praise,
wrapped in openers, context, consequences, closers, signatures, quoted reply chains, HTML and typos, so the
cleaner, redactor, embedder and clusterer downstream meet text that looks like the real thing.

Planted signals (ground truth in :attr:`DemoData.truth`, keyed by external id), which later stages must find:

* Emerging: ``ai_summaries`` and ``data_residency`` (:data:`EMERGING_THEMES`) are near zero until the last
  three ISO weeks, then rise fast (about 10, 25 and 40+ items a week). ``data_residency``
  (:data:`DEAL_BLOCKER_THEME`) comes mostly from enterprise prospects with open pipeline, in call and field
  notes that call it a deal blocker and name a competitor (Productboard, Canny, Aha!) as the alternative.
* Fading: ``calendar_sync`` (:data:`FADING_THEME`) is strong in the first weeks, then decays; almost gone in
  the last four weeks (the duplicate-event bug was fixed).
* Steady and large: ``dashboard_performance`` (:data:`STEADY_THEME`) is the biggest theme, flat over time.

The other themes (:data:`THEMES`) have stable, noisy weekly rates. Everything is deterministic for
``(seed, now)``: only seeded ``random.Random`` and ``numpy`` generators are used.
"""

from __future__ import annotations

import datetime as dt
import html
import random
import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate

import numpy as np

from ingest.records import AccountRecord, AccountRef, FeedbackRecord

__all__ = [
    "DEAL_BLOCKER_THEME",
    "DEMO_SOURCES",
    "EMERGING_THEMES",
    "FADING_THEME",
    "STEADY_THEME",
    "THEMES",
    "DemoData",
    "generate_demo",
]

DEMO_SOURCES: dict[str, str] = {
    "zendesk-demo": "zendesk",
    "intercom-demo": "intercom",
    "salesforce-demo": "salesforce",
    "field-notes": "field_notes",
}
SOURCE_OF_KIND = {
    "ticket": "zendesk-demo",
    "chat": "intercom-demo",
    "call_note": "salesforce-demo",
    "field_note": "field-notes",
}

EMERGING_THEMES = ("ai_summaries", "data_residency")
DEAL_BLOCKER_THEME = "data_residency"
FADING_THEME = "calendar_sync"
STEADY_THEME = "dashboard_performance"

VENDOR = "Tallyboard"
VENDOR_DOMAIN = "tallyboard.io"


@dataclass
class DemoData:
    """Generated accounts and feedback, with the theme each item was written about."""

    accounts: list[AccountRecord]
    items: list[tuple[str, FeedbackRecord]]  # (source name, record), ordered by occurred_at
    truth: dict[str, str] = field(default_factory=dict)  # external_id -> theme key


@dataclass(frozen=True)
class _Theme:
    key: str
    label: str
    rate: float  # mean items per week for themes without a planted shape
    short: tuple[str, ...]  # noun phrases for subjects and notes
    problems: tuple[str, ...]
    asks: tuple[str, ...]
    questions: tuple[str, ...]
    praise: tuple[str, ...]
    blockers: tuple[str, ...] = ()  # how a prospect's note calls this a deal blocker
    intent_weights: tuple[float, float, float, float] = (0.5, 0.27, 0.14, 0.09)


_T = _Theme
_THEME_LIST: tuple[_Theme, ...] = (
    _T("sso_saml", "SSO / SAML login", 9.0,
       ("SSO", "SAML SSO", "{idp} SSO", "SSO login", "single sign-on", "the SAML config"),
       ("Our users keep getting bounced back to the login page after authenticating with {idp}.",
        "SAML login fails with 'Invalid assertion' for about half of our team since this morning.",
        "We set up SSO with {idp} following your docs, but the ACS URL in the docs doesn't match what the "
        "app expects.",
        "Every time someone logs in via SSO it creates a duplicate user instead of matching the existing one.",
        "SSO sessions expire after an hour, so people have to log in again all day long.",
        "New hires can't get in through {idp} even though they're assigned to the app.",
        "The SSO error page just says 'Something went wrong' with no detail, so IT can't debug it.",
        "Single sign-on broke for everyone after we rotated our {idp} certificate."),
       ("We need to be able to enforce SSO for everyone and switch off password logins.",
        "Can you support more than one identity provider? We use {idp} for staff and another for contractors.",
        "Please add just-in-time provisioning so users get created on their first SAML login.",
        "It would help a lot if you supported IdP-initiated login, not only SP-initiated."),
       ("Does SSO work with {idp}, or only with Okta?",
        "Which plan includes SAML SSO? Our security team requires it.",
        "How do we rotate the SAML signing certificate without locking everyone out?"),
       ("The new SSO setup wizard was painless, we were live on {idp} in ten minutes.",
        "Thanks for fixing the SAML redirect loop so fast."),
       ("no SSO, no deal. security won't approve password logins", "SAML SSO is a must-have for them")),
    _T("csv_export", "CSV export", 8.0,
       ("CSV export", "exports", "the export to CSV", "data export", "the Excel export"),
       ("The CSV export cuts off at {big} rows, so we never get the full dataset.",
        "Exported CSV files open with garbled characters in Excel, every accented name is broken.",
        "The export button spins forever on large projects and then times out.",
        "Dates in the CSV export come out in a different timezone than the UI shows.",
        "Custom fields are missing from the export, which makes it useless for our finance reconciliation.",
        "The email with the export download link never arrives.",
        "Commas inside notes break the columns in the exported file."),
       ("Please let us schedule a recurring export to S3 or Google Drive.",
        "We'd love an XLSX export instead of only CSV.",
        "Can you let us choose which columns go into the export?"),
       ("Is there a way to export everything, archived records included, in one go?",
        "Where do I find the export for comments and attachments?"),
       ("The faster exports are a big improvement, our monthly report takes minutes now.",)),
    _T("salesforce_sync", "Salesforce integration sync", 8.0,
       ("Salesforce sync", "the SFDC integration", "the Salesforce integration", "CRM sync"),
       ("The Salesforce sync stopped updating opportunities {n} days ago and no error shows anywhere.",
        "Every sync creates duplicate contacts in Salesforce.",
        "The field mappings we set for Salesforce keep resetting after each sync.",
        "The Salesforce integration overwrites values our reps entered by hand.",
        "We hit our Salesforce API limits because your sync polls every minute.",
        "Salesforce sync errors just say INVALID_FIELD without telling us which field."),
       ("We need a two-way sync with Salesforce, not just one direction.",
        "Please support syncing custom Salesforce objects, not only accounts and opportunities.",
        "It would be great to trigger a manual Salesforce resync for a single record."),
       ("Does the Salesforce integration work with sandbox orgs?",
        "How often does the Salesforce sync run, and can we change it?"),
       ("Since the Salesforce connector update our account data finally matches the CRM.",),
       ("needs bi-directional SFDC sync or it's a non-starter",)),
    _T("mobile_crashes", "Mobile app crashes", 9.0,
       ("mobile app crashes", "the iOS app", "the Android app crashing", "the mobile app"),
       ("The iOS app crashes as soon as I open a project with attachments.",
        "The Android app force-closes on launch since the last update ({ver}).",
        "On my {device} the app freezes when I switch between workspaces.",
        "The mobile app crashes whenever I try to upload a photo from the camera.",
        "After updating to {os} the app won't get past the splash screen.",
        "The app logs me out and crashes every time it comes back from the background.",
        "Our field techs lose their work because the app crashes in the middle of a form."),
       ("Please make the mobile app keep drafts so a crash doesn't wipe everything.",),
       ("Is there a known issue with the app on {os}? Reinstalling didn't help.",
        "Which version of the mobile app fixes the crash on startup?"),
       ("The latest mobile release is much more stable, not one crash all week.",),
       intent_weights=(0.75, 0.06, 0.13, 0.06)),
    _T("dashboard_performance", "Dashboard performance", 27.0,
       ("slow dashboards", "dashboard performance", "dashboard load times", "page speed",
        "the slow home dashboard"),
       ("Dashboards take {n} seconds or more to load, and sometimes they never finish.",
        "The main dashboard is painfully slow every Monday morning when everyone logs in.",
        "Opening a board with more than a few hundred cards freezes {browser} completely.",
        "Filtering the dashboard takes forever, every click is another spinner.",
        "Dashboard widgets load one by one and half of them time out with 'Failed to fetch'.",
        "The app has gotten noticeably slower over the last few months, the dashboards especially.",
        "Scrolling through the list view lags badly, even on a brand new laptop.",
        "Our team sits and waits for the home dashboard to load several times a day.",
        "The dashboard eats so much memory that our {browser} tabs crash.",
        "Switching between projects takes {n} seconds every single time.",
        "Reports and dashboards that used to load instantly now take close to a minute."),
       ("Please add pagination or lazy loading on the big dashboards.",
        "Could you cache dashboards so they don't recompute on every visit?",
        "We'd love a lightweight dashboard view that loads fast for people who only need the numbers."),
       ("Is there a limit on how many widgets a dashboard can have before it slows down?",
        "Is the dashboard slowness on your side or something in our setup?",
        "Are there any settings we can change to make the dashboards load faster?"),
       ("The dashboard feels much snappier after your last release, thank you.",),
       ("worried about dashboard speed at their scale ({big} records)",)),
    _T("billing_invoices", "Billing and invoices", 7.0,
       ("invoices", "billing", "the invoice PDFs", "a double charge"),
       ("We were charged twice this month for the same subscription.",
        "Our invoices don't show our VAT number, so finance can't book them.",
        "The invoice PDF shows our old company address even after we updated it.",
        "We removed {n} seats but we're still being billed for them.",
        "Our card was declined and the account got locked without a single warning email.",
        "The billing page shows a different amount than the invoice we received."),
       ("Please let us pay by invoice and bank transfer instead of credit card.",
        "We need invoices sent to a separate billing contact, not the account owner.",
        "Can you add PO numbers to invoices? Our procurement team requires them."),
       ("Where can I download our invoices for the last year?",
        "How is proration calculated when we add seats mid-cycle?"),
       ("Thanks for sorting out the refund so quickly.",)),
    _T("permissions_roles", "Permissions and roles", 9.0,
       ("permissions", "user roles", "custom roles", "access control"),
       ("Guests can see projects they were never invited to.",
        "There's no way to give someone read-only access, it's either editor or admin.",
        "When I change a user's role it doesn't take effect until they log out and back in.",
        "Admins can't remove someone's access to one workspace without removing them entirely.",
        "Contractors can see salary fields because permissions don't apply to custom fields."),
       ("We need custom roles, the built-in roles are far too coarse for a team our size.",
        "Please add field-level permissions so sensitive data can be hidden.",
        "Can permission groups map to our {idp} groups?",
        "It would be great to restrict who is allowed to delete projects."),
       ("Is there a way to see who has access to what across all workspaces?",
        "Can a project admin invite external users without being an org admin?"),
       ("The new viewer role is exactly what our execs needed.",),
       ("needs granular roles/permissions before rolling out to {big} users",),
       intent_weights=(0.42, 0.38, 0.12, 0.08)),
    _T("api_rate_limits", "API rate limits", 6.0,
       ("API rate limits", "API limits", "429 errors from the API", "API throttling"),
       ("We keep hitting 429 Too Many Requests during our nightly sync.",
        "The API rate limit of {n} requests per minute is far too low for our integration.",
        "The API doesn't send rate limit headers, so our client can't back off properly.",
        "Bulk API endpoints count each record against the rate limit, which defeats the purpose.",
        "Our integration partner's jobs fail every night because the API throttles them."),
       ("Please raise the API limits on enterprise plans, or let us pay for more.",
        "We need a bulk API so we don't have to make {big} calls.",
        "Webhooks would save us from polling your API all the time."),
       ("What exactly are the API rate limits, per token and per org?",
        "Is there a sandbox API with higher limits for testing?"),
       ("The new batch endpoint cut our API calls by 90%, great work.",)),
    _T("notification_overload", "Notification overload", 8.0,
       ("notification spam", "too many notifications", "email notifications", "notification settings"),
       ("I get an email for every single comment, my inbox is flooded.",
        "People on our team have started ignoring notifications because there are far too many.",
        "Muting a project doesn't actually stop the notification emails.",
        "We get the same notification three times: email, push and in-app.",
        "Notification settings reset to 'all activity' after every update."),
       ("Please add a daily digest instead of one email per change.",
        "Admins need a way to set default notification preferences for the whole team.",
        "Can you let us turn off notifications for changes we made ourselves?"),
       ("How do I stop getting notified about projects I'm not part of anymore?",),
       ("The new digest option is great, my inbox is finally quiet.",)),
    _T("search_quality", "Search quality", 8.0,
       ("search", "search results", "global search", "search relevance"),
       ("Search doesn't find records even when I type the exact title.",
        "Search results are full of archived items and the thing I want is on page three.",
        "Searching for a customer name returns nothing if there's one typo.",
        "Search doesn't look inside attachments or comments.",
        "New items take hours to show up in search.",
        "Search is case sensitive, which nobody expects."),
       ("Please add filters to search, like owner, date and status.",
        "We'd like to save searches and share them with the team."),
       ("Is there a search syntax for exact phrases or excluding words?",
        "Why doesn't search find items in other workspaces?"),
       ("Search got a lot better recently, it finally finds what I mean.",)),
    _T("onboarding", "Onboarding and setup", 7.0,
       ("onboarding", "the setup process", "getting started", "new user onboarding"),
       ("Our new team members are lost after signup, there's no guidance on what to do first.",
        "The setup checklist asks for things we don't use and it can't be dismissed.",
        "The invite emails land in spam, so half of our users never finished onboarding.",
        "The product tour keeps popping up for people who have used the app for months.",
        "It took us {n} weeks to get the team fully set up, far longer than we were promised."),
       ("Please provide templates for common use cases so we don't start from a blank page.",
        "We need an admin guide for rolling this out to {big} employees.",
        "A sandbox with sample data would help people learn without breaking anything."),
       ("Is onboarding training or a kickoff call included in our plan?",
        "How do we import our existing data during setup?"),
       ("Our onboarding session with {person} was excellent, the team is up and running.",)),
    _T("data_retention", "Data retention and deletion", 5.0,
       ("data retention", "GDPR deletion", "retention policies", "data deletion"),
       ("Deleted records still show up in exports, which is a GDPR problem for us.",
        "We have no way to automatically purge records older than {n} months.",
        "A customer asked us to erase their data and we couldn't find everything about them.",
        "Deleting a user doesn't remove their personal data from comments and history."),
       ("We need configurable retention policies per workspace for compliance.",
        "Please support right-to-be-forgotten requests with a single action.",
        "Can you send us a signed DPA and your list of sub-processors?"),
       ("How long do you keep backups after we delete data?",
        "Is deleted data really gone, or only hidden?"),
       ("The new retention settings made our compliance audit much easier.",)),
    _T("slack_integration", "Slack integration", 7.0,
       ("the Slack integration", "the Slack app", "Slack notifications"),
       ("The Slack integration stopped posting to our channels after we reconnected it.",
        "Slack messages from the app show raw markdown and broken links.",
        "Every tiny update posts to Slack, so the channel is unreadable.",
        "The Slack app keeps asking us to reauthorize every few days.",
        "Creating an item from Slack drops the attachments."),
       ("Please let us create and update items straight from Slack with a slash command.",
        "We'd like to pick which events go to which Slack channel.",
        "Can you support Slack Enterprise Grid with several workspaces?"),
       ("Does the Slack app work in private channels?",),
       ("The Slack integration is the feature my team uses most, love it.",)),
    _T("dark_mode", "Dark mode", 5.0,
       ("dark mode", "a dark theme", "theme options"),
       ("The app is blinding at night, there's no dark mode at all.",
        "The dark mode beta has unreadable grey-on-black text in tables.",
        "Dark mode doesn't follow the system setting, I have to switch it by hand every time."),
       ("Please add a dark mode, half the team works late and it's hard on the eyes.",
        "Can we have a high-contrast theme for accessibility?",
        "Would love dark mode on the mobile app too.",
        "Any chance of a dark theme? Every other tool we use has one."),
       ("Is dark mode on the roadmap?",),
       ("Dark mode is gorgeous, thank you for finally shipping it.",),
       intent_weights=(0.2, 0.58, 0.12, 0.1)),
    _T("audit_logs", "Audit logs", 5.0,
       ("audit logs", "the audit trail", "the activity log"),
       ("The audit log only goes back {n} days, which isn't enough for our auditors.",
        "We can't tell who deleted a project because the audit log doesn't record deletions.",
        "The audit log export is missing IP addresses.",
        "The activity history doesn't show what value a field changed from."),
       ("We need to stream audit logs to our SIEM, Splunk or Datadog.",
        "Please add an audit log API so our security team can pull events.",
        "Our SOC 2 auditor needs a full audit trail of permission changes."),
       ("Where can admins see login history and failed login attempts?",
        "How long are audit logs kept on the enterprise plan?"),
       ("The audit log export saved us during our SOC 2 audit.",),
       ("security team requires full audit logs w/ SIEM export",),
       intent_weights=(0.35, 0.45, 0.14, 0.06)),
    _T("custom_fields", "Custom fields", 7.0,
       ("custom fields", "custom field types", "custom properties"),
       ("We hit the limit of {n} custom fields per project.",
        "Custom dropdown fields lose their values when we reorder the options.",
        "Custom fields don't show up in filters or reports.",
        "Formula fields return the wrong totals when a value is empty."),
       ("Please add a currency custom field with proper formatting.",
        "We need required custom fields so people can't skip them.",
        "Can custom fields be shared across projects instead of recreated every time?",
        "Conditional fields that only appear based on another field's value would be amazing."),
       ("Can I change the type of a custom field without losing data?",),
       ("The new date-range field is exactly what we asked for.",),
       intent_weights=(0.4, 0.42, 0.1, 0.08)),
    _T("reporting_charts", "Reporting and charts", 9.0,
       ("reporting", "charts", "custom reports", "the analytics"),
       ("The charts don't match the numbers in the list view.",
        "Reports can only group by one field, which is far too limited.",
        "Report totals are off when items move between statuses during the week.",
        "Charts render blank when there are more than a few thousand rows.",
        "There's no way to compare this quarter with last quarter in reports."),
       ("Please let us email a scheduled report to stakeholders every Monday.",
        "We need burndown and cumulative flow charts.",
        "Can we build pivot-table style reports?",
        "Embedding charts in our internal wiki would be super useful."),
       ("Can reports be shared with people who don't have a seat?",),
       ("The new report builder is fantastic, leadership loves the charts.",),
       ("exec team needs better reporting than what they saw in the demo",),
       intent_weights=(0.4, 0.4, 0.1, 0.1)),
    _T("jira_integration", "Jira integration", 6.0,
       ("the Jira integration", "Jira sync", "Jira"),
       ("The Jira integration stopped syncing status changes.",
        "Linked Jira issues show the wrong assignee.",
        "Comments from Jira come through twice.",
        "We can't connect to Jira Data Center, only Jira Cloud seems to work.",
        "The Jira sync breaks when an issue moves to another project."),
       ("Please sync custom Jira fields, not only summary and status.",
        "We want Jira issues created automatically from items tagged as bugs."),
       ("Does the Jira integration support more than one Jira site?",
        "Can the Jira sync be one-way only?"),
       ("Since the Jira fix, engineering and support finally see the same status.",)),
    _T("pricing", "Pricing", 6.0,
       ("pricing", "the price increase", "per-seat pricing", "plan limits"),
       ("The new pricing is a {pct}% increase for us with no new value.",
        "Per-seat pricing punishes us for inviting occasional users.",
        "We're being forced onto the enterprise tier just to get one feature.",
        "The price jumped at renewal and nobody told us in advance."),
       ("Please offer a cheaper tier for view-only users.",
        "We'd like annual pricing with a nonprofit discount.",
        "Can you offer usage-based pricing instead of seats?"),
       ("What would pricing look like for {big} users?",
        "Is there a discount if we commit to {n} years?"),
       ("Honestly the pricing is fair for what we get.",),
       ("pricing is {pct}% above budget, {comp} came in cheaper",)),
    _T("uptime_outages", "Uptime and outages", 7.0,
       ("outages", "downtime", "uptime", "the 502 errors"),
       ("The app was down for almost {n} hours on {day} and the status page said everything was fine.",
        "We're seeing 502 errors several times a day.",
        "Third outage this month, our team couldn't work all morning.",
        "Saving fails now and then with 'Service unavailable'.",
        "Your status page is always green even when the app is clearly down."),
       ("We need a proper SLA with credits for downtime.",
        "Please send proactive incident emails to admins."),
       ("Can you share the root cause analysis for yesterday's outage?",
        "What was your uptime over the last 12 months?"),
       ("Thanks for the transparent postmortem on last week's incident.",),
       ("needs a 99.9% uptime SLA in the contract",),
       intent_weights=(0.7, 0.1, 0.14, 0.06)),
    _T("localization", "Localization", 5.0,
       ("localization", "translations", "language support", "the {lang} translation"),
       ("Half of the interface is still in English after switching to {lang}.",
        "Dates show in US format even though our locale is set to {lang}.",
        "The {lang} translation is clearly machine-translated and confusing.",
        "Right-to-left languages break the layout.",
        "Number formatting ignores the locale, commas and decimal points are swapped."),
       ("Please add {lang} as a language, our teams in the region need it.",
        "We need emails and notifications localized too, not only the UI."),
       ("Which languages are supported today?",),
       ("Our {lang} colleagues are thrilled with the new translation.",),
       ("needs {lang} UI for their ops teams",)),
    _T("offline_mode", "Offline mode", 5.0,
       ("offline mode", "offline access", "working without connectivity"),
       ("Our field teams lose everything they entered when the connection drops.",
        "The app is useless on sites without signal.",
        "Changes made offline get overwritten when the device reconnects."),
       ("We need an offline mode in the mobile app, our crews work in basements and remote sites.",
        "Please let us download projects for offline use before a trip.",
        "Offline mode that syncs when you're back online is a must for us.",
        "Even read-only offline access would help our inspectors."),
       ("Is offline mode planned for this year?",
        "Does the app cache anything when there's no internet?"),
       ("The offline beta worked perfectly on our last site visit.",),
       ("field crews need offline mode, otherwise they stay on paper",),
       intent_weights=(0.3, 0.5, 0.14, 0.06)),
    _T("bulk_edit", "Bulk edit", 6.0,
       ("bulk edit", "bulk actions", "mass updates"),
       ("I have to update {big} records one by one because there's no bulk edit.",
        "Bulk edit silently skips items in other projects.",
        "Bulk delete has no undo and we just lost a week of work.",
        "Selecting more than {n} items with shift-click doesn't work for bulk actions."),
       ("Please add bulk edit for status, owner and due date.",
        "We need to bulk move items between projects.",
        "Let us bulk update custom fields from a CSV."),
       ("Is there a way to reassign all items from someone who left the company?",),
       ("Bulk edit is a huge time-saver, thank you.",),
       intent_weights=(0.4, 0.42, 0.1, 0.08)),
    _T("calendar_sync", "Calendar sync duplicates", 0.0,
       ("calendar sync", "the Google Calendar sync", "the Outlook calendar sync"),
       ("The Google Calendar sync creates duplicate events for every due date.",
        "Outlook calendar events disappear a day after syncing.",
        "Calendar sync shows every deadline an hour off since the clocks changed.",
        "Since the calendar sync update, recurring events get copied dozens of times.",
        "Our shared calendar is flooded with duplicate entries from the sync.",
        "Disconnecting the calendar doesn't remove the events it created.",
        "My calendar has {n} copies of the same deadline now."),
       ("Please let us choose which projects sync to the calendar.",),
       ("How do we clean up the duplicate calendar events the sync created?",
        "Is the calendar duplication bug fixed yet?"),
       ("Calendar sync works again after the fix, thanks.",),
       intent_weights=(0.72, 0.06, 0.17, 0.05)),
    _T("ai_summaries", "AI summaries and assistant", 0.0,
       ("AI summaries", "the AI assistant", "auto-summaries", "AI features"),
       ("The new AI summary gets key facts wrong, it said the deal was closed when it wasn't.",
        "AI summaries come out in English even for {lang} threads.",
        "The AI assistant button shows up for everyone but says it's not enabled on our plan.",
        "The AI summary of long threads just repeats the first message."),
       ("Please add AI summaries of long comment threads, nobody reads fifty comments.",
        "We want an AI assistant that drafts status updates from the activity in a project.",
        "Could AI auto-tag incoming requests? We spend hours triaging by hand.",
        "{comp} just launched AI summaries and our team keeps asking when you'll have them.",
        "An AI weekly recap of what changed in each project would save our managers a ton of time.",
        "We'd pay extra for an AI assistant that answers questions about our project data."),
       ("Is our data used to train the AI features? Legal needs to know before we turn them on.",
        "Can admins switch the AI assistant off for certain workspaces?",
        "When will AI summaries be available on our plan?"),
       ("The AI summary beta is brilliant, it saved me an hour this morning.",
        "Love the AI recap, our standups got shorter."),
       ("wants AI summaries like {comp} has",),
       intent_weights=(0.25, 0.45, 0.18, 0.12)),
    _T("data_residency", "EU data residency", 0.0,
       ("EU data residency", "data residency", "EU hosting", "regional hosting", "in-region data storage"),
       ("Our data is hosted in the US and our works council won't approve that.",
        "Our security review failed because you can't guarantee data stays in the {region}.",
        "Backups being replicated to US data centers is a problem for our data protection officer."),
       ("We need all our data stored in an EU data center, Frankfurt or Dublin.",
        "Please offer hosting in the {region}, it's a legal requirement for us.",
        "We need a contractual guarantee that data and backups never leave the {region}."),
       ("Do you offer a {region} region for data storage?",
        "Where exactly are your servers and backups located?",
        "Is there a timeline for EU data residency?"),
       (),
       ("won't sign until we can host their data in the {region}",
        "data residency in the {region} is a hard requirement from legal",
        "{comp} offers EU hosting and they're leaning that way",
        "procurement won't move forward without in-region data storage",
        "security questionnaire failed on data residency, deal on hold",
        "CISO says no US hosting, full stop",
        "blocker: need EU data center + backups in region, {comp} already has it",
        "legal wants a data residency clause for the {region} in the MSA"),
       intent_weights=(0.3, 0.45, 0.25, 0.0)),
)
THEMES: dict[str, str] = {theme.key: theme.label for theme in _THEME_LIST}
_THEME_BY_KEY = {theme.key: theme for theme in _THEME_LIST}

# ---------------------------------------------------------------------------------------------------- words
_FIRST = ("Jane", "Tom", "Priya", "Marcus", "Sofia", "Liam", "Aisha", "Chen", "Olivia", "Mateo", "Hannah",
          "Yuki", "Daniel", "Fatima", "Lucas", "Emma", "Noah", "Zara", "Ben", "Ines", "Raj", "Camille",
          "Erik", "Grace", "Omar", "Lena", "Diego", "Nina", "Sam", "Ana", "Kwame", "Julia", "Pavel", "Mia",
          "Tariq", "Chloe", "Henrik", "Aya", "Victor", "Maya", "Ravi", "Elena", "Jonas", "Ruth", "Felix")
_LAST = ("Doe", "Nguyen", "Patel", "Schmidt", "Garcia", "Okafor", "Kim", "Rossi", "Johansson", "Silva",
         "Müller", "Tanaka", "Brown", "Dubois", "Kowalski", "Haddad", "O'Brien", "Larsen", "Chen",
         "Fernandes", "Novak", "Walsh", "Ibrahim", "Meyer", "Costa", "Park", "Lindqvist", "Moreau",
         "Baker", "Singh", "Horvat", "Adeyemi", "Yilmaz", "Jensen", "Reyes", "Weber", "Sato", "Murphy")
_TITLES = ("Head of Ops", "VP Engineering", "IT Admin", "Customer Success Lead", "Director of Product",
           "Support Lead", "CTO", "Procurement Manager", "Security Engineer", "RevOps Manager",
           "Project Manager", "Operations Manager", "Office Manager", "Head of Finance", "Team Lead")
_NOTE_ROLES = ("VP Eng", "Head of Ops", "CTO", "IT Director", "Procurement", "CISO", "Dir. of Product",
               "COO", "RevOps lead", "Champion", "Eng Manager", "CFO")
_SYLLABLE_A = ("Nor", "Vel", "Quan", "Bright", "Ash", "Cor", "Lum", "Zen", "Kel", "Mar", "Ever", "Blue",
               "Stone", "Tri", "Octa", "Nova", "Peak", "Silver", "Red", "Harbor", "Pine", "Arc", "Hex",
               "Sol", "Terra", "Vanta", "Iron", "Oak", "Clear", "Swift", "Gran", "Alta", "Fern", "Orbi")
_SYLLABLE_B = ("vex", "ora", "path", "line", "stack", "well", "field", "gate", "ware", "bridge", "mark",
               "nix", "io", "ly", "point", "wave", "forge", "scale", "crest", "tek", "loop", "ridge", "ium",
               "base", "wood", "sphere", "hub", "ton", "lane", "grid")
_INDUSTRY = ("Logistics", "Health", "Labs", "Systems", "Capital", "Foods", "Analytics", "Group", "Retail",
             "Energy", "Media", "Software", "Bank", "Insurance", "Robotics", "Construction", "Biotech",
             "Travel", "Learning", "Security", "Manufacturing", "Partners", "Mobility", "Studios")
_LEGAL = ("Inc.", "GmbH", "Ltd", "LLC", "plc", "AG", "Corp.", "SAS")
_TLDS = (".com", ".com", ".com", ".io", ".co", ".de", ".co.uk", ".fr", ".net", ".ai", ".nl")
_CITIES = ("Berlin", "Austin", "London", "Toronto", "Lyon", "Denver", "Amsterdam", "Sydney", "Chicago",
           "Madrid", "Stockholm", "Boston", "Dublin", "Munich", "Seattle")
_COMPETITORS = ("Productboard", "Canny", "Aha!", "Asana", "Monday.com", "ClickUp", "Smartsheet", "Airtable",
                "Wrike", "Notion")
_BLOCKER_COMPETITORS = ("Productboard", "Productboard", "Canny", "Canny", "Aha!")
_IDPS = ("Okta", "Azure AD", "Google Workspace", "OneLogin", "Ping Identity", "JumpCloud", "Entra ID")
_BROWSERS = ("Chrome", "Safari", "Firefox", "Edge")
_DEVICES = ("iPhone 15", "iPhone 13", "Pixel 8", "Galaxy S23", "iPad Air", "Galaxy Tab", "iPhone SE")
_OSES = ("iOS 17.4", "iOS 18.1", "Android 14", "Android 13", "iPadOS 17")
_LANGS = ("German", "French", "Japanese", "Spanish", "Portuguese", "Dutch", "Italian", "Polish")
_REGIONS = ("EU", "EU", "EU", "Germany", "UK", "Canada", "Australia")
_DAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
_TEAMS = ("support team", "ops team", "CS team", "finance team", "engineering org", "sales team",
          "field crews", "marketing team", "PMO", "IT department")
_PLANS = ("Business", "Enterprise", "Pro", "Team", "Growth")
_AGENTS = ("Maya", "Jordan", "Alex", "Priscilla", "Sven", "Leah", "Kofi", "Rosa")
_REPS = ("dana.kim", "matt.hughes", "elif.aydin", "george.obi", "sarah.lund", "pedro.alves", "kate.moss",
         "ivan.petrov", "nora.bell", "tyler.reed")
_STAGES = ("Discovery", "Evaluation", "Proposal", "Security Review", "Negotiation")


class _Slots(dict[str, str]):
    """Fills ``{slot}`` placeholders lazily, so each template draws only the values it uses."""

    def __init__(self, rng: random.Random, **fixed: str) -> None:
        super().__init__(fixed)
        self.rng = rng

    def __missing__(self, key: str) -> str:
        r = self.rng
        value: str
        if key == "n":
            value = str(r.choice((2, 3, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 45)))
        elif key == "big":
            value = f"{r.choice((300, 500, 800, 1000, 1200, 2500, 5000, 10000, 20000, 65000)):,}"
        elif key == "pct":
            value = str(r.choice((15, 20, 25, 30, 40, 50, 60)))
        elif key == "comp":
            value = r.choice(_COMPETITORS)
        elif key == "idp":
            value = r.choice(_IDPS)
        elif key == "browser":
            value = r.choice(_BROWSERS)
        elif key == "device":
            value = r.choice(_DEVICES)
        elif key == "os":
            value = r.choice(_OSES)
        elif key == "ver":
            value = f"{r.randint(4, 6)}.{r.randint(0, 19)}.{r.randint(0, 9)}"
        elif key == "lang":
            value = r.choice(_LANGS)
        elif key == "region":
            value = r.choice(_REGIONS)
        elif key == "day":
            value = r.choice(_DAYS)
        elif key == "person":
            value = r.choice(_FIRST)
        elif key == "team":
            value = r.choice(_TEAMS)
        elif key == "plan":
            value = r.choice(_PLANS)
        elif key == "city":
            value = r.choice(_CITIES)
        else:
            raise KeyError(key)
        self[key] = value  # one value per slot within an item keeps the story consistent
        return value


# ---------------------------------------------------------------------------------------------- text pools
_GREETINGS = ("Hi team,", "Hello,", "Hello support team,", f"Dear {VENDOR} support,", "Hi there,",
              "Good morning,", "Hi all,", "Hi {agent},", "Hello {agent},")
_GREETINGS_CASUAL = ("hey folks", "hi!", "hey team", "hey,", "hiya", "")
_OPENERS = ("I'm writing about an issue with {short}.", "We've run into a problem and hope you can help.",
            "Reaching out on behalf of our {team}.", "Following up on my earlier message.",
            "Not sure if this is the right place for this, but here goes.",
            "I wanted to flag something our team noticed this week.", "Quick one for you.",
            "This has come up several times now.", "I have a question about {short}.",
            "Some feedback about {short} from our {team}.", "Hope you're well.",
            "Apologies for the long email.", "Our admin asked me to send this over.")
_OPENERS_CASUAL = ("ok so", "not sure who to ask but", "ugh,", "sorry to bug you again,", "quick q:",
                   "so,", "heads up:", "random one:", "this again:")
_CONTEXT = ("We have about {n} people in the app every day.", "We're on the {plan} plan with {big} seats.",
            "This affects our whole {team}.", "We rolled the app out to our {team} last quarter.",
            "It started after your release on {day}.",
            "We've tried clearing the cache and switching to {browser}, same thing.",
            "My colleague {person} sees exactly the same.", "It happens on both Mac and Windows.",
            "We're a {n}-person team based in {city}.", "We've been customers for {n} years.",
            "Our {team} relies on this for daily standups.", "This is for our {city} office.",
            "I've attached a screenshot.", "We noticed it on {day} but it may have started earlier.")
_CONSEQUENCES = ("It's costing us hours every week.", "Our team is getting really frustrated.",
                 "This is blocking our month-end close.", "Right now we work around it with spreadsheets.",
                 "Leadership keeps asking me why we pay for this.",
                 "We had to postpone a rollout to another team because of it.",
                 "This is becoming a real problem for adoption.",
                 "People are going back to email because of this.",
                 "Our {team} can't do their job properly until this is sorted.",
                 "Half the team has given up on the feature.")
_NICE_TO_HAVE = ("It's not urgent, but it would make life a lot easier.",
                 "This would make a big difference for our {team}.",
                 "I know others have asked for this too.", "Happy to be a beta tester.",
                 "Would really appreciate it if this made it onto the roadmap.",
                 "That alone would probably let us roll out to {n} more teams.")
_CHURN = ("Honestly, we're evaluating alternatives at this point.",
          "If this isn't fixed we will cancel at renewal.",
          "We've started a trial of {comp} because of this.",
          "Our renewal is in {n} weeks and this will be a deciding factor.",
          "I'm getting pressure to move us to {comp}.",
          "We'll have to reconsider our contract if this continues.",
          "Several teams are asking to switch to {comp}.")
_CLOSERS = ("Thanks in advance.", "Any update would be appreciated.", "Is there an ETA?", "Please advise.",
            "Looking forward to hearing from you.", "Let me know if you need more details.",
            "Happy to jump on a call.", "Thank you!", "Appreciate your help.")
_CLOSERS_CASUAL = ("thx!", "cheers", "lmk", "thanks!!", "appreciate it", "ty", "")
_SIGNOFFS = ("Thanks,\n{first}", "Best,\n{first}", "Regards,\n{first} {last}", "Cheers,\n{first}",
             "- {first}", "Kind regards,\n{first} {last}", "Thanks\n{first}")
_PII = ("You can reach me on {phone}.", "Please loop in my colleague {email2}.",
        "Our admin is {first2} ({email2}) if you need access.", "My direct line is {phone}.",
        "Feel free to call me at {phone} today.", "Please cc {email2} on any reply.")
_AGENT_REPLIES = ("Thanks for reaching out! I've passed this on to our product team.",
                  "Sorry for the trouble. Could you tell me which browser and version you're using?",
                  "I've logged this with our engineers and will update you as soon as I hear back.",
                  "That's on our roadmap, and I've added your vote to the request.",
                  "Could you send us a screenshot or a screen recording of what you see?",
                  "Thanks for the detailed report, we're looking into it.",
                  "We released a fix yesterday, could you check whether it still happens?")
_CHAT_AGENT = {
    "problem": ("Hi! Thanks for reaching out, let me take a look.", "Sorry about that! Which browser are you on?",
                "I've logged this as a bug with our engineers.", "Could you send me a screenshot?",
                "Hmm, that's not expected. Can you try a hard refresh?", "Oh no, sorry! Checking now.",
                "Thanks, I can reproduce it. Escalating to the team."),
    "ask": ("Got it, I've passed this to our product team.", "That's on our roadmap, I'll add your vote.",
            "Thanks for the feedback, I'll share it with the team!", "Great idea, I'll log it as a request.",
            "Not possible today unfortunately, but I've noted your use case."),
    "question": ("Good question! Let me find out.", "Let me check that for you, one moment.",
                 "I'll ask the team and get back to you by email.", "Here's the help article on that."),
    "praise": ("That's so nice to hear, thank you!", "Thanks! I'll pass it on to the team.",
               "Glad it's working well for you!"),
}
_CHAT_FOLLOWUPS = ("chrome, latest version", "ok thanks", "any idea when?", "it's pretty urgent for us tbh",
                   "sure, one sec", "that would be great", "ok, appreciate it", "tried that already",
                   "cool, thanks", "yes please", "same thing on my colleague's laptop", "👍")
_CALL_SUMMARY_CUSTOMER = ("QBR, main topic was {short}", "renewal check-in; {short} came up again",
                          "escalation on {short}", "monthly sync, mostly about {short}",
                          "exec sponsor call, {short} top of their list", "health check; raised {short}")
_CALL_SUMMARY_PROSPECT = ("discovery call; asked a lot about {short}", "demo went well but {short} is a concern",
                          "eval debrief, {short} came up", "pricing discussion, they raised {short}",
                          "technical deep dive, focus on {short}", "follow-up demo for their {team}")
_CALL_REPORTED = ('They said: "{s}"', 'Quote from {person}: "{s}"', "{person} mentioned: {s}", "{s}",
                  'Direct quote: "{s}"', "Per {person}: {s}")
_CALL_EXTRA = ("Champion seems frustrated.", "Renewal in {n} months, this is top of their list.",
               "Expansion of {n} seats depends on it.", "Otherwise positive, usage is up.",
               "Mood was good overall.", "Sent them the help article, not sure it'll be enough.",
               "Exec sponsor joined for the last 10 min.")
_CALL_EXTRA_PROSPECT = ("Champion is keen, needs ammo for their CFO.", "They're comparing us with {comp}.",
                        "Decision expected in {n} weeks.", "Trial with {n} users starts next week.",
                        "Budget approved, timing depends on this.", "Mood was good overall.")
_CALL_NEXT = ("Next steps: send roadmap update on {short}.", "NS: loop in PM, follow up next week.",
              "Follow-up: SE to send docs.", "Action: log it for product, share ETA.",
              "Next: schedule session with their {team}.", "Will check with product and get back by {day}.")
_FIELD_VERBS = ("wants", "asking abt", "pushing on", "needs", "keeps bringing up", "complained re",
                "q about", "raised", "frustrated w/", "wants update on")
_FIELD_TIMING = (" b4 renewal", " before q3", " asap", "", "", "", " for rollout", " by eoq")
_FIELD_TAILS = ("blocker.", "nice to have.", "champion frustrated.", "ARR at risk.", "sent to PM.",
                "follow up w/ SE.", "using {comp} for this today.", "3rd time they asked.", "", "",
                "not urgent.", "will escalate.")
_FIELD_TAILS_PROSPECT = ("blocker.", "nice to have.", "champion frustrated.", "sent to PM.",
                         "follow up w/ SE.", "they use {comp} for this today.", "could slow the deal.", "",
                         "", "asked for roadmap.", "2nd call where this came up.", "not a dealbreaker.")
_FIELD_CHURN = ("might churn.", "evaluating {comp}.", "renewal at risk!!", "said they'll cancel if not fixed.")
_ABBREV = ((" before ", " b4 "), (" with ", " w/ "), (" about ", " abt "), (" because ", " bc "),
           (" requirement", " req"), (" customer", " cust"), (" meeting", " mtg"), (" and ", " & "))
_TICKET_TITLES = {
    "problem": ("{Short} not working", "Issue with {short}", "{Short} broken?", "Problem: {short}",
                "URGENT - {short}", "{Short} issue again", "Bug: {short}", "Help with {short}"),
    "ask": ("Feature request: {short}", "Request: {short}", "Suggestion re {short}", "{Short} - request",
            "Idea for {short}"),
    "question": ("Question about {short}", "{Short}?", "Quick question re {short}", "Q: {short}"),
    "praise": ("Thanks!", "Kudos on {short}", "Positive feedback", "{Short} - thank you"),
}
_INTENTS = ("problem", "ask", "question", "praise")
_KIND_MIX = {"ticket": 0.45, "chat": 0.3, "call_note": 0.13, "field_note": 0.12}
_BLOCKER_KIND_MIX = {"ticket": 0.08, "chat": 0.07, "call_note": 0.4, "field_note": 0.45}
_BACKGROUND_VOLUME = 1.15  # scales every theme without a planted shape
_WEEKDAY_WEIGHTS = (1.0, 1.05, 1.0, 0.95, 0.85, 0.25, 0.2)

_WORD = re.compile(r"[A-Za-z]{4,}")


# --------------------------------------------------------------------------------------------- generation
@dataclass
class _Contact:
    first: str
    last: str
    title: str
    email: str
    phone: str


@dataclass
class _Account:
    record: AccountRecord
    short: str  # name without the legal suffix, as reps write it
    contacts: list[_Contact]
    stage: str = "Expansion"  # of its open opportunity


class _Picker:
    """Weighted choice over a fixed population in O(log n)."""

    def __init__(self, items: Sequence[_Account], weights: Sequence[float]) -> None:
        self.items = list(items)
        self.cum = list(accumulate(weights))

    def __bool__(self) -> bool:
        return bool(self.items) and self.cum[-1] > 0

    def pick(self, rng: random.Random) -> _Account:
        return self.items[bisect_right(self.cum, rng.random() * self.cum[-1])]


def _phone(rng: random.Random) -> str:
    style = rng.random()
    if style < 0.5:
        return f"+1 {rng.choice((415, 212, 646, 512, 303, 617))} 555 0{rng.randint(100, 199)}"
    if style < 0.75:
        return f"+44 20 7946 0{rng.randint(100, 999)}"
    return f"+49 30 {rng.randint(1000000, 9999999)}"


def _make_accounts(rng: random.Random, nrng: np.random.Generator, count: int) -> list[_Account]:
    names: set[str] = set()
    accounts: list[_Account] = []
    while len(accounts) < count:
        base = rng.choice(_SYLLABLE_A) + rng.choice(_SYLLABLE_B)
        if rng.random() < 0.45:
            base = f"{base} {rng.choice(_INDUSTRY)}"
        if base.lower() in names:
            continue
        names.add(base.lower())
        full = f"{base} {rng.choice(_LEGAL)}" if rng.random() < 0.4 else base
        slug = base.lower().replace(" ", rng.choice(("", "-")))
        domain = slug + rng.choice(_TLDS)
        segment = rng.choices(("enterprise", "mid-market", "smb"), (0.22, 0.36, 0.42))[0]
        lifecycle = rng.choices(("customer", "prospect", "churned"), (0.65, 0.25, 0.10))[0]
        accounts.append(_Account(
            AccountRecord(name=full, domain=domain, segment=segment, lifecycle=lifecycle,
                          external_ids={"salesforce": f"001{rng.getrandbits(60):015X}"[:18],
                                        "zendesk": str(360_000_000_000 + rng.randint(1, 999_999_999))}),
            base, []))
    # The deal-blocker signal needs enterprise prospects: guarantee a handful whatever the dice said.
    wanted = min(max(3, count // 15), count)
    hot = sum(a.record.segment == "enterprise" and a.record.lifecycle == "prospect" for a in accounts)
    order = {"prospect": 0, "churned": 1, "customer": 2}
    others = sorted((a for a in accounts if not (a.record.segment == "enterprise"
                                                 and a.record.lifecycle == "prospect")),
                    key=lambda a: order[a.record.lifecycle or "customer"])
    for account in others[:max(0, wanted - hot)]:
        account.record.segment, account.record.lifecycle = "enterprise", "prospect"
    arr_median = {"enterprise": 240_000.0, "mid-market": 55_000.0, "smb": 9_000.0}
    for account in accounts:
        record = account.record
        median = arr_median[record.segment or "smb"]
        if record.lifecycle == "customer":
            record.arr = round(float(nrng.lognormal(np.log(median), 0.6)), -2)
            if rng.random() < 0.2:
                record.open_pipeline = round(float(nrng.lognormal(np.log(median * 0.3), 0.5)), -3)
        elif record.lifecycle == "prospect":
            record.arr = 0.0
            if record.segment == "enterprise" or rng.random() < 0.8:
                record.open_pipeline = round(float(nrng.lognormal(np.log(median * 0.8), 0.5)), -3)
        else:
            record.arr = 0.0
        if record.lifecycle == "prospect":
            account.stage = rng.choice(_STAGES)
        n_contacts = 1 + min(int(nrng.pareto(1.5)), 8) + (2 if record.segment == "enterprise" else 0)
        for _ in range(n_contacts):
            first, last = rng.choice(_FIRST), rng.choice(_LAST)
            local = rng.choice((f"{first}.{last}", f"{first[0]}{last}", first)).lower()
            local = local.replace("'", "").replace("ü", "ue")
            account.contacts.append(_Contact(first, last, rng.choice(_TITLES), f"{local}@{record.domain}",
                                             _phone(rng)))
    return accounts


def _typos(text: str, rng: random.Random, rate: float) -> str:
    """Swap or drop a letter in a few words, leaving emails, links and numbers alone."""

    def damage(match: re.Match[str]) -> str:
        word = match.group(0)
        if not word[0].islower() or rng.random() >= rate:  # names and brands are rarely misspelt
            return word
        i = rng.randint(1, len(word) - 2)
        if rng.random() < 0.5:
            return word[:i] + word[i + 1] + word[i] + word[i + 2:]
        return word[:i] + word[i + 1:]

    out = []
    for token in text.split(" "):
        if "@" in token or "/" in token or "{" in token or any(c.isdigit() for c in token):
            out.append(token)
        else:
            out.append(_WORD.sub(damage, token))
    return " ".join(out)


def _casual(text: str) -> str:
    text = text.replace("I am ", "im ").replace("don't", "dont").replace("can't", "cant")
    return text[:1].lower() + text[1:] if text[:2] != "I " else text


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


class _Writer:
    """Composes the text of one item of each kind."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def _pick_intent(self, theme: _Theme) -> str:
        pools = (theme.problems, theme.asks, theme.questions, theme.praise)
        weights = [w if pool else 0.0 for w, pool in zip(theme.intent_weights, pools, strict=True)]
        return self.rng.choices(_INTENTS, weights)[0]

    def _core(self, theme: _Theme, intent: str, count: int) -> list[str]:
        pool = {"problem": theme.problems, "ask": theme.asks, "question": theme.questions,
                "praise": theme.praise}[intent]
        picked = self.rng.sample(pool, min(count, len(pool)))
        if count > len(picked) or (intent == "problem" and theme.asks and self.rng.random() < 0.3):
            picked.append(self.rng.choice(theme.asks or theme.problems))
        return picked

    def ticket(self, theme: _Theme, account: _Account | None, contact: _Contact, when: dt.datetime,
               slots: _Slots) -> tuple[str, str, bool, str]:
        r = self.rng
        intent = self._pick_intent(theme)
        casual = r.random() < 0.3
        length = r.choices(("short", "medium", "long"), (0.2, 0.55, 0.25))[0]
        short = slots["short"]
        title = r.choice(_TICKET_TITLES[intent]).format(short=short, Short=_cap(short))
        core = self._core(theme, intent, {"short": 1, "medium": r.choice((1, 2)), "long": r.choice((2, 3))}
                          [length])
        paragraphs: list[str] = []
        greeting = r.choice(_GREETINGS_CASUAL if casual else _GREETINGS)
        if length != "short" and greeting:
            paragraphs.append(greeting)
        first: list[str] = []
        if length != "short" and r.random() < 0.55:
            first.append(r.choice(_OPENERS_CASUAL if casual else _OPENERS))
        first.append(_casual(core[0]) if casual and first else core[0])
        if length == "long" or r.random() < 0.35:
            first.append(r.choice(_CONTEXT))
        paragraphs.append(" ".join(first))
        rest = core[1:]
        if rest:
            paragraphs.append(" ".join(rest))
        if length != "short":
            tail: list[str] = []
            if intent == "problem" and r.random() < 0.6:
                tail.append(r.choice(_CONSEQUENCES))
            elif intent == "ask" and r.random() < 0.6:
                tail.append(r.choice(_NICE_TO_HAVE))
            churn_odds = 0.25 if theme.key in ("uptime_outages", "pricing", "billing_invoices") else 0.08
            customer = account is not None and account.record.lifecycle == "customer"
            if customer and intent in ("problem", "ask") and r.random() < churn_odds:
                tail.append(r.choice(_CHURN))
            if r.random() < 0.3:
                tail.append(r.choice(_PII))
            if tail:
                paragraphs.append(" ".join(tail))
            if length == "long" and r.random() < 0.15:
                other = r.choice(_THEME_LIST)
                if other.problems and other is not theme:
                    paragraphs.append("P.S. unrelated, but " + _casual(r.choice(other.problems)))
            closer = r.choice(_CLOSERS_CASUAL if casual else _CLOSERS)
            if closer:
                paragraphs.append(closer)
            paragraphs.append(r.choice(_SIGNOFFS))
        body = "\n\n".join(paragraphs)
        if casual:
            body = _casual(body)
        company = account.record.name if account else "Freelance"
        if length != "short" and r.random() < 0.35:
            lines = ["--", f"{contact.first} {contact.last}", f"{contact.title} | {company}", contact.phone]
            if r.random() < 0.5:
                lines.append(contact.email)
            if account and r.random() < 0.3:
                lines.append(f"www.{account.record.domain}")
            body += "\n\n" + "\n".join(lines)
        if r.random() < 0.1:
            body += "\n\nSent from my iPhone"
        quote_roll = r.random()
        if quote_roll < 0.14:
            body += "\n\n" + self._reply_chain(theme, contact, when, slots)
        elif quote_roll < 0.2:
            body += "\n\n" + self._outlook_chain(theme, contact, when, title, slots)
        is_html = r.random() < 0.15
        if is_html:
            body = "".join(f"<p>{html.escape(p).replace(chr(10), '<br>')}</p>" for p in body.split("\n\n"))
        return title, body, is_html, intent

    def _reply_chain(self, theme: _Theme, contact: _Contact, when: dt.datetime, slots: _Slots) -> str:
        r = self.rng
        earlier = when - dt.timedelta(hours=r.randint(3, 96), minutes=r.randint(0, 59))
        agent = slots["agent"]
        stamp = f"{earlier:%a, %b} {earlier.day}, {earlier.year} at {earlier:%I:%M %p}".replace(" 0", " ")
        quoted = [f"Hi {contact.first},", "", r.choice(_AGENT_REPLIES), "", "Best,", f"{agent}",
                  f"{VENDOR} Support"]
        lines = [f"On {stamp} {agent} from {VENDOR} <support@{VENDOR_DOMAIN}> wrote:"]
        lines += [f"> {line}" if line else ">" for line in quoted]
        if r.random() < 0.5:
            original = r.choice(theme.problems or theme.asks)
            lines += [">", f"> On {earlier:%a, %b} {earlier.day}, {contact.first} {contact.last} "
                      f"<{contact.email}> wrote:", f">> {original}"]
        return "\n".join(lines)

    def _outlook_chain(self, theme: _Theme, contact: _Contact, when: dt.datetime, title: str,
                       slots: _Slots) -> str:
        r = self.rng
        earlier = when - dt.timedelta(days=r.randint(1, 6), hours=r.randint(0, 8))
        return "\n".join([
            "-----Original Message-----",
            f"From: {contact.first} {contact.last} <{contact.email}>",
            f"Sent: {earlier:%A, %B} {earlier.day}, {earlier.year} {earlier:%I:%M %p}",
            f"To: support@{VENDOR_DOMAIN}",
            f"Subject: {title}",
            "",
            r.choice(theme.problems or theme.asks or theme.questions),
        ])

    def chat(self, theme: _Theme, contact: _Contact | None, customer: bool, when: dt.datetime,
             slots: _Slots) -> tuple[str, str]:
        r = self.rng
        intent = self._pick_intent(theme)
        who = contact.first if contact else "Visitor"
        agent = f"{slots['agent']} ({VENDOR})"
        core = self._core(theme, intent, r.choice((1, 1, 2)))
        stamped = r.random() < 0.4
        clock = when
        lines: list[tuple[str, str]] = []
        opener = r.choice(("hey", "hi there", "hello", "quick question", "hi, need some help", "", ""))
        first = _casual(core[0]) if opener or r.random() < 0.6 else core[0]
        lines.append((who, f"{opener} - {first}" if opener else first))
        lines.append((agent, r.choice(_CHAT_AGENT[intent])))
        for extra in core[1:]:
            lines.append((who, _casual(extra)))
        if r.random() < 0.6:
            lines.append((who, r.choice(_CHAT_FOLLOWUPS)))
        if customer and intent == "problem" and r.random() < 0.08:
            lines.append((who, _casual(r.choice(_CHURN))))
        if r.random() < 0.12:
            lines.append((who, f"my email is {contact.email if contact else 'sam.k@gmail.com'}"))
        if r.random() < 0.5:
            lines.append((agent, r.choice(_CHAT_AGENT[r.choice((intent, intent, "question"))])))
        out = []
        for speaker, said in lines:
            said = said.format_map(slots) if "{" in said else said
            if stamped:
                out.append(f"[{clock:%H:%M}] {speaker}: {said}")
                clock += dt.timedelta(minutes=r.randint(0, 3))
            else:
                out.append(f"{speaker}: {said}")
        return "\n".join(out), intent

    def call_note(self, theme: _Theme, account: _Account, contact: _Contact, blocker: bool,
                  slots: _Slots) -> tuple[str, str]:
        r = self.rng
        prospect = account.record.lifecycle == "prospect"
        role = r.choice(_NOTE_ROLES)
        if blocker and theme.blockers:
            summary = r.choice(theme.blockers)
            head = r.choice(("Eval call", "Call", "Security review call", "Mtg"))
        else:
            summary = r.choice(_CALL_SUMMARY_PROSPECT if prospect else _CALL_SUMMARY_CUSTOMER)
            head = "Call"
        lines = [f"{head} w/ {account.short} ({role}) — {summary}."]
        intent = self._pick_intent(theme)
        for sentence in self._core(theme, intent, r.choice((1, 1, 2))):
            lines.append("- " + r.choice(_CALL_REPORTED).replace("{s}", sentence))
        if blocker and theme.blockers:
            others = [b for b in theme.blockers if b != summary]
            lines.append("- " + _cap(r.choice(others)) + ".")
            if account.record.open_pipeline:
                lines.append(f"- Deal ${account.record.open_pipeline / 1000:,.0f}k, competing w/ {{comp}}.")
        elif prospect and theme.blockers and r.random() < 0.3:
            lines.append("- " + _cap(r.choice(theme.blockers)) + ".")
        if r.random() < 0.5:
            lines.append("- " + r.choice(_CALL_EXTRA_PROSPECT if prospect else _CALL_EXTRA))
        if not prospect and intent == "problem" and r.random() < 0.12:
            lines.append("- Churn risk: " + _casual(r.choice(_CHURN)))
        if r.random() < 0.15:
            lines.append(f"- Contact: {contact.first} {contact.last}, {contact.email}, {contact.phone}")
        lines.append(r.choice(_CALL_NEXT))
        return "\n".join(lines[:1] + [""] + lines[1:]), intent

    def field_note(self, theme: _Theme, account: _Account, contact: _Contact, blocker: bool,
                   slots: _Slots) -> tuple[str, str]:
        r = self.rng
        acct = account.short if r.random() < 0.5 else account.short.split(" ")[0]
        short = slots["short"]
        intent = self._pick_intent(theme)
        if blocker and theme.blockers:
            phrase = r.choice(theme.blockers)
            form = r.randrange(5)
            if form == 0:
                text = f"{acct} {phrase}." + ("" if "blocker" in phrase else " blocker.")
            elif form == 1:
                text = f"mtg w/ {acct} ({r.choice(_NOTE_ROLES)}) - {phrase}. deal stuck until we have {short}."
            elif form == 2:
                text = (f"{acct}: {short} {r.choice(('is a blocker', 'blocking signature', 'hard blocker'))}. "
                        "alt is {comp}.")
            elif form == 3:
                text = f"spoke to {contact.first} @ {acct}, {phrase}. need roadmap date from PM."
            else:
                text = (f"{acct} - won't sign until we have {short}. {phrase}. "
                        f"{r.choice(('pls escalate', 'asked for eta', 'risk to close date', ''))}")
        else:
            form = r.randrange(5)
            timing = r.choice(_FIELD_TIMING)
            churny = intent == "problem" and account.record.lifecycle == "customer" and r.random() < 0.12
            tails = _FIELD_TAILS_PROSPECT if account.record.lifecycle == "prospect" else _FIELD_TAILS
            tail = r.choice(_FIELD_CHURN if churny else tails)
            if intent == "problem" and tail in ("nice to have.", "not urgent."):
                tail = "needs a fix."
            if form == 0:
                text = f"{acct} {r.choice(_FIELD_VERBS)} {short}{timing}. {tail}"
            elif form == 1:
                text = f"{acct}: {short} again. {tail}"
            elif form == 2:
                text = f"visited {acct}. {_casual(r.choice(self._core(theme, intent, 1)))} {tail}"
            elif form == 3:
                text = f"spoke to {contact.first} @ {acct}, {r.choice(_FIELD_VERBS)} {short}{timing}. {tail}"
            else:
                said = self._core(theme, intent, 1)[0]
                text = f"{acct} ({r.choice(_NOTE_ROLES)}) - {_casual(said)} {tail}"
        text = text.strip()
        if r.random() < 0.75:
            text = text.lower()
        text = " " + text + " "
        for long_form, abbrev in _ABBREV:
            if r.random() < 0.7:
                text = text.replace(long_form, abbrev)
        return text.strip(), intent


def _week_starts(now: dt.datetime, weeks: int) -> list[dt.datetime]:
    monday = (now - dt.timedelta(days=now.weekday())).replace(hour=0, minute=0, second=0, microsecond=0)
    return [monday - dt.timedelta(weeks=weeks - 1 - i) for i in range(weeks)]


def _weekly_rate(theme: _Theme, age: int, weeks: int) -> float:
    """Mean items per week for ``theme`` ``age`` weeks before the current one."""
    if theme.key == "ai_summaries":
        return {2: 12.0, 1: 27.0, 0: 46.0}.get(age, 0.06)
    if theme.key == "data_residency":
        return {2: 10.0, 1: 22.0, 0: 40.0}.get(age, 0.05)
    if theme.key == FADING_THEME:
        if age <= 3:
            return 0.4
        return 0.8 + 21.0 * ((age - 3) / max(1, weeks - 4)) ** 1.3
    return theme.rate * _BACKGROUND_VOLUME


def _when(rng: random.Random, start: dt.datetime, now: dt.datetime) -> dt.datetime:
    end = min(start + dt.timedelta(days=7), now)
    days = max(1, min(7, (end - start).days + 1))
    day = rng.choices(range(days), _WEEKDAY_WEIGHTS[:days])[0]
    hour = min(23.99, max(0.0, rng.gauss(14.5, 3.5)))
    moment = start + dt.timedelta(days=day, seconds=int(hour * 3600))
    if moment > end or moment >= start + dt.timedelta(days=7):
        moment = start + dt.timedelta(seconds=int(rng.random() * (end - start).total_seconds()))
    return moment


def generate_demo(*, weeks: int = 16, accounts: int = 150, seed: int = 7,
                  now: dt.datetime | None = None) -> DemoData:
    """Invent accounts and feedback with planted emerging, fading and steady themes.

    Args:
        weeks: ISO weeks covered, the current (possibly partial) week included.
        accounts: how many accounts to invent.
        seed: seed of every random draw; the same ``(seed, now)`` gives the same data.
        now: end of the data; defaults to the current UTC time. A naive value is taken as UTC.

    Returns:
        Accounts, ``(source name, record)`` pairs ordered by ``occurred_at``, and the theme of each item.
    """
    if weeks < 1:
        raise ValueError(f"weeks must be at least 1, got {weeks}")
    if accounts < 1:
        raise ValueError(f"accounts must be at least 1, got {accounts}")
    if now is None:
        now = dt.datetime.now(dt.UTC)
    now = now.replace(tzinfo=dt.UTC) if now.tzinfo is None else now.astimezone(dt.UTC)
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    people = _make_accounts(rng, nrng, accounts)

    # Zipf-like activity over a random ranking: a few accounts write much of the feedback.
    activity = 1.0 / (nrng.permutation(len(people)) + 1.0) ** 0.8
    seg_boost = {"enterprise": 2.0, "mid-market": 1.4, "smb": 1.0}
    weights = [float(a) * seg_boost[p.record.segment or "smb"] for a, p in zip(activity, people, strict=True)]
    life_support = {"customer": 1.0, "churned": 0.25, "prospect": 0.06}
    life_notes = {"customer": 0.8, "prospect": 1.3, "churned": 0.08}
    support = _Picker(people, [w * life_support[p.record.lifecycle or "customer"]
                               for w, p in zip(weights, people, strict=True)])
    notes = _Picker(people, [w * life_notes[p.record.lifecycle or "customer"]
                             for w, p in zip(weights, people, strict=True)])
    hot = [(p, w) for p, w in zip(people, weights, strict=True) if p.record.segment == "enterprise"
           and p.record.lifecycle == "prospect" and (p.record.open_pipeline or 0) > 0]
    blocker_pool = _Picker([p for p, _ in hot], [w ** 0.5 for _, w in hot])  # flatter: many deals at stake

    writer = _Writer(rng)
    starts = _week_starts(now, weeks)
    drafts: list[tuple[dt.datetime, str, str, FeedbackRecord]] = []
    for index, start in enumerate(starts):
        age = weeks - 1 - index
        for theme in _THEME_LIST:
            rate = _weekly_rate(theme, age, weeks)
            if theme.key == STEADY_THEME:
                # Flatter than Poisson, so "steady" survives any seed.
                count = max(0, round(float(nrng.normal(rate, 0.1 * rate))))
            elif theme.key in EMERGING_THEMES or theme.key == FADING_THEME:
                count = int(nrng.poisson(rate))
            else:
                # Noisy but less than Poisson, so no background theme drifts into looking like a trend.
                rate *= float(nrng.lognormal(0.0, 0.08))
                count = max(0, round(float(nrng.normal(rate, 0.6 * rate ** 0.5))))
            mix = _BLOCKER_KIND_MIX if theme.key == DEAL_BLOCKER_THEME else _KIND_MIX
            for _ in range(count):
                kind = rng.choices(tuple(mix), tuple(mix.values()))[0]
                when = _when(rng, start, now)
                drafts.append(_draft(writer, rng, theme, kind, when, support, notes, blocker_pool))

    drafts.sort(key=lambda d: (d[0], d[1]))
    items: list[tuple[str, FeedbackRecord]] = []
    truth: dict[str, str] = {}
    counters = {"ticket": 48_000, "chat": 215_400_000_000, "call_note": 0, "field_note": 0}
    for when, kind, theme_key, record in drafts:
        counters[kind] += rng.randint(1, 3) if kind in ("ticket", "chat") else 1
        n = counters[kind]
        if kind == "ticket":
            record.external_id = str(n)
            record.url = f"https://tallyboard-demo.zendesk.com/agent/tickets/{n}"
        elif kind == "chat":
            record.external_id = str(n)
            record.url = f"https://app.intercom.com/a/inbox/demo/inbox/conversation/{n}"
        elif kind == "call_note":
            record.external_id = f"00T5e{n:013d}"
        else:
            record.external_id = f"fn-{when:%Y%m%d}-{n:05d}"
        items.append((SOURCE_OF_KIND[kind], record))
        truth[record.external_id] = theme_key
    return DemoData(accounts=[p.record for p in people], items=items, truth=truth)


def _draft(writer: _Writer, rng: random.Random, theme: _Theme, kind: str, when: dt.datetime,
           support: _Picker, notes: _Picker, blocker_pool: _Picker,
           ) -> tuple[dt.datetime, str, str, FeedbackRecord]:
    blocker = theme.key == DEAL_BLOCKER_THEME and bool(blocker_pool) and rng.random() < 0.85
    pool = blocker_pool if blocker else support if kind in ("ticket", "chat") else notes
    account = pool.pick(rng)
    contact = rng.choice(account.contacts)
    short = rng.choice(theme.short)
    slots = _Slots(rng, agent=rng.choice(_AGENTS), first=contact.first, last=contact.last,
                   phone=contact.phone, email=contact.email)
    if theme.key == DEAL_BLOCKER_THEME:
        slots["comp"] = rng.choice(_BLOCKER_COMPETITORS)
    other = rng.choice(account.contacts)
    slots["first2"], slots["email2"] = other.first, other.email
    slots["short"] = short.format_map(slots)
    record = FeedbackRecord(external_id="", text="", occurred_at=when, kind=kind)
    rep = f"{rng.choice(_REPS)}@{VENDOR_DOMAIN}"
    lifecycle = account.record.lifecycle
    if kind == "ticket":
        anonymous = False
        title, body, is_html, intent = writer.ticket(theme, account, contact, when, slots)
        record.title = _fill(title, slots)
        record.is_html = is_html
        record.author_role = "customer"
        record.submitted_by = contact.email
        record.tags = [{"problem": "bug", "ask": "feature_request", "question": "question",
                        "praise": "feedback"}[intent]]
        if account.record.segment == "enterprise":
            record.tags.append("vip")
    elif kind == "chat":
        anonymous = rng.random() < 0.06
        customer = account.record.lifecycle == "customer"
        body, intent = writer.chat(theme, None if anonymous else contact, customer, when, slots)
        record.author_role = "customer"
        record.submitted_by = None if anonymous else contact.email
    elif kind == "call_note":
        anonymous = False
        body, intent = writer.call_note(theme, account, contact, blocker, slots)
        record.title = f"Call w/ {account.short}"
        record.author_role = "sales" if lifecycle == "prospect" else "csm"
        record.submitted_by = rep
    else:
        anonymous = False
        body, intent = writer.field_note(theme, account, contact, blocker, slots)
        record.author_role = "sales"
        record.submitted_by = rep
    text = _fill(body, slots)
    if kind in ("chat", "field_note") and rng.random() < 0.35:
        text = _typos(text, rng, 0.05)
    elif kind == "ticket" and not record.is_html and rng.random() < 0.15:
        text = _typos(text, rng, 0.03)
    record.text = text
    if not anonymous:
        acc = account.record
        if kind in ("ticket", "chat"):
            roll = rng.random()
            if roll < 0.7:
                record.account = AccountRef(domain=acc.domain)
            elif roll < 0.85:
                record.account = AccountRef(name=acc.name, domain=acc.domain)
            else:
                system = "zendesk" if kind == "ticket" else "intercom"
                ext = acc.external_ids["zendesk"] if kind == "ticket" else None
                record.account = AccountRef(domain=acc.domain, external_id=ext, system=system if ext else None)
        else:
            name = account.short if rng.random() < 0.5 else acc.name
            if kind == "call_note" and rng.random() < 0.5:
                record.account = AccountRef(name=name, external_id=acc.external_ids["salesforce"],
                                            system="salesforce")
            else:
                record.account = AccountRef(name=name)
            if (acc.open_pipeline or 0) > 0:
                record.deal_amount = acc.open_pipeline
                record.deal_stage = account.stage
    return when, kind, theme.key, record


def _fill(text: str, slots: _Slots) -> str:
    """Fill slots; text already filled (or with literal braces from HTML) passes through."""
    if "{" not in text:
        return text
    try:
        return text.format_map(slots)
    except (KeyError, ValueError, IndexError):
        return text
