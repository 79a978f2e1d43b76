// The seller page: sign up (POST /sellers), connect and onboard with Stripe (the account and onboarding-link
// routes; Stripe's onboarding returns here with ?onboarding=…), the account's real state (GET /sellers/me,
// never the query string), listings (GET/POST /sellers/me/listings) and sales (GET /sellers/me/orders).
// The bearer token lives in this tab's sessionStorage and is sent as Authorization (docs/pages.md).
import {
  $,
  SELLER_TOKEN,
  api,
  clearNotice,
  currencies,
  forgetSessionToken,
  formatDate,
  formatMoney,
  h,
  keepSessionToken,
  leaveFor,
  markCurrentNav,
  notice,
  problemText,
  readPrice,
  sessionToken,
  shortId,
} from "/shop/assets/common.js";

const message = $("#page-message");
const RETURNS = {
  returned: ["info", "Welcome back from Stripe. Your account's state below is read from Stripe just now."],
  link_expired: ["warn", "That onboarding link has expired or was already used. Continue onboarding to get a new one."],
  disconnected: ["bad", "This Stripe account was disconnected from the platform. Connect a new one to sell again."],
  no_account: ["warn", "There is no payments account yet. Connect with Stripe to create one."],
  error: ["bad", "Stripe could not be reached just now. Please try again in a moment."],
};

let token = sessionToken(SELLER_TOKEN);

const call = (method, path, body) => api(method, path, { body, bearer: token });

// ---- signed out ---------------------------------------------------------------------------------
$("#signup-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = {
    display_name: String(form.get("display_name")).trim(),
    email: String(form.get("email")).trim(),
    country: String(form.get("country")).trim().toUpperCase(),
    business_type: String(form.get("business_type")),
  };
  if (form.get("account_profile")) body.account_profile = String(form.get("account_profile"));
  const answer = await api("POST", "/sellers", { body });
  if (!answer.ok) {
    notice(message, "bad", problemText(answer.problem));
    return;
  }
  signIn(answer.data.token);
  $("#token-value").textContent = answer.data.token;
  $("#token-once").hidden = false;
  notice(message, "good", "Your seller account is ready. Next: connect with Stripe to take payments.");
  await show();
});

$("#signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const candidate = String(new FormData(event.target).get("token")).trim();
  const answer = await api("GET", "/sellers/me", { bearer: candidate });
  if (!answer.ok) {
    notice(message, "bad", answer.status === 401 || answer.status === 403 ? "That is not a seller token." : problemText(answer.problem));
    return;
  }
  signIn(candidate);
  event.target.reset();
  clearNotice(message);
  await show(answer.data);
});

function signIn(value) {
  token = value;
  keepSessionToken(SELLER_TOKEN, value);
}

$("#sign-out").addEventListener("click", () => {
  token = null;
  forgetSessionToken(SELLER_TOKEN);
  $("#token-once").hidden = true;
  $("#token-value").textContent = "";
  clearNotice(message);
  render(null);
});

// ---- the account --------------------------------------------------------------------------------
function describe(account) {
  if (!account) return ["none", "not connected", "Connect with Stripe to take payments. Stripe asks for your details on its own page."];
  const req = account.requirements;
  switch (account.status) {
    case "active":
      return ["active", "active", "You can take payments, and Stripe pays out to your bank."];
    case "restricted":
      return ["restricted", "restricted", "Stripe needs more information before you can take payments or receive payouts."];
    case "onboarding":
      if (account.details_submitted || req.pending_verification.length) {
        return ["pending", "pending", "Stripe is checking the details you sent. This page shows the result once Stripe has it."];
      }
      return ["onboarding", "onboarding not finished", "Finish onboarding with Stripe to take payments."];
    case "disabled":
      return ["disabled", "disabled", `Stripe has disabled this account${req.disabled_reason ? ` (${req.disabled_reason})` : ""}.`];
    case "disconnected":
      return ["disconnected", "disconnected", "This Stripe account was disconnected from the platform. Connect a new one to sell again."];
    default:
      return [String(account.status), String(account.status), ""];
  }
}

// What Stripe still wants: each field once, those past their deadline marked.
function dueList(title, fields, overdue = []) {
  const all = [...new Set([...overdue, ...fields])];
  if (!all.length) return null;
  const item = (f) => h("li", { "data-field": f }, h("code", { text: f }), overdue.includes(f) ? h("span", { class: "overdue", text: " overdue" }) : null);
  return h("div", {}, h("p", { text: title }), h("ul", { class: "due" }, all.map(item)));
}

function button(text, onclick, kind = "") {
  const node = h("button", { type: "button", class: kind, text });
  node.addEventListener("click", async () => {
    node.disabled = true;
    try {
      await onclick();
    } finally {
      node.disabled = false;
    }
  });
  return node;
}

async function onboard() {
  notice(message, "info", "Opening Stripe…");
  const created = await call("POST", "/sellers/me/stripe-account");
  if (!created.ok) {
    notice(message, "bad", problemText(created.problem));
    return;
  }
  const link = await call("POST", "/sellers/me/onboarding-link");
  if (!link.ok) {
    notice(message, "bad", problemText(link.problem));
    return;
  }
  if (!leaveFor(link.data.url)) notice(message, "bad", "Stripe's onboarding page could not be opened.");
}

async function openDashboard() {
  const link = await call("POST", "/sellers/me/dashboard-link");
  if (!link.ok) {
    notice(message, "bad", problemText(link.problem));
    return;
  }
  if (!leaveFor(link.data.url)) notice(message, "bad", "The Stripe dashboard could not be opened.");
}

function renderAccount(account) {
  const [state, label, text] = describe(account);
  const badge = $("#account-status");
  badge.dataset.status = state;
  badge.textContent = label;
  const req = account ? account.requirements : null;
  const parts = [
    h("p", { text }),
    req && account.status !== "disconnected" ? dueList("Stripe currently needs:", req.currently_due, req.past_due) : null,
    req && account.status === "active" ? dueList("Due later:", req.eventually_due) : null,
    account && account.status !== "disconnected"
      ? h(
          "p",
          { class: "muted small" },
          `Charges ${account.charges_enabled ? "enabled" : "not enabled"} · payouts ${account.payouts_enabled ? "enabled" : "not enabled"} · `,
          account.dashboard === "express" ? "Express dashboard" : "full Stripe dashboard",
        )
      : null,
  ];
  $("#account-detail").replaceChildren(...parts.filter(Boolean));
  const actions = [];
  if (!account || account.status === "disconnected") actions.push(button("Connect with Stripe", onboard));
  else if (account.status === "onboarding" || account.status === "restricted") actions.push(button("Continue onboarding", onboard));
  if (account && account.status === "active" && account.dashboard === "express") {
    actions.push(button("Open your Stripe dashboard", openDashboard, "secondary"));
  }
  $("#account-actions").replaceChildren(...actions);
}

// ---- listings -----------------------------------------------------------------------------------
const currencySelect = $("#listing-form select[name=currency]");
currencySelect.replaceChildren(
  ...currencies()
    .sort()
    .map((code) => h("option", { value: code, text: code.toUpperCase(), selected: code === "usd" })),
);

async function loadListings() {
  const answer = await call("GET", "/sellers/me/listings?limit=50");
  const body = $("#listings-table tbody");
  if (!answer.ok) {
    notice($("#listings-message"), "bad", problemText(answer.problem));
    return;
  }
  body.replaceChildren(
    ...answer.data.items.map((l) =>
      h(
        "tr",
        { "data-listing": l.id },
        h("td", { text: l.title }),
        h("td", { class: "num", text: formatMoney(l.unit_amount, l.currency) }),
        h("td", { class: "num", text: l.stock === null ? "unlimited" : String(l.stock) }),
        h("td", { text: l.active ? "yes" : "no" }),
      ),
    ),
  );
  $("#listings-table").hidden = !answer.data.items.length;
}

$("#listing-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const status = $("#listings-message");
  const currency = String(form.get("currency"));
  const price = readPrice(String(form.get("price")), currency);
  if (price.problem) {
    notice(status, "bad", price.problem); // said in the currency's units before the API sees it
    return;
  }
  const stock = String(form.get("stock")).trim();
  const body = {
    title: String(form.get("title")).trim(),
    description: String(form.get("description")),
    unit_amount: price.amount,
    currency,
    stock: stock === "" ? null : Number(stock),
  };
  const answer = await call("POST", "/sellers/me/listings", body);
  if (!answer.ok) {
    notice(status, "bad", problemText(answer.problem));
    return;
  }
  notice(status, "good", `Listed “${answer.data.title}” at ${formatMoney(answer.data.unit_amount, answer.data.currency)}.`);
  event.target.reset();
  currencySelect.value = currency;
  await loadListings();
});

// ---- sales --------------------------------------------------------------------------------------
async function loadSales() {
  const answer = await call("GET", "/sellers/me/orders?limit=50");
  if (!answer.ok) return;
  const rows = answer.data.items.map((o) => saleRow(o));
  $("#sales-table tbody").replaceChildren(...rows);
  $("#sales-table").hidden = !rows.length;
  $("#sales-empty").hidden = Boolean(rows.length);
}

// Fee and net: before payment, the order's total and fee as decided; once paid, what the API says Stripe
// charged, the fee taken with it (none when a 100 % discount charged nothing) and the seller's share.
function saleRow(o) {
  const paid = o.amount_paid !== undefined && o.amount_paid !== null;
  const charged = paid ? o.amount_paid : o.total;
  const fee = paid ? o.application_fee_charged : o.application_fee;
  const net = paid ? o.seller_share : Math.max(o.total - o.application_fee, 0);
  return h(
    "tr",
    { "data-order": o.id },
    h("td", { text: formatDate(o.created_at) }),
    h("td", {}, h("code", { text: shortId(o.id) })),
    h("td", {}, h("span", { class: "status", "data-status": o.status, text: o.status })),
    h("td", { text: o.lines.map((l) => `${l.title} × ${l.quantity}`).join(", ") }),
    h("td", { class: "num", text: formatMoney(charged, o.currency) }),
    h("td", { class: "num sale-fee", text: formatMoney(fee, o.currency) }),
    h("td", { class: "num sale-net", text: formatMoney(net, o.currency) }),
  );
}

// ---- the page -----------------------------------------------------------------------------------
function render(profile) {
  $("#signed-out").hidden = Boolean(profile);
  $("#signed-in").hidden = !profile;
  if (!profile) return;
  $("#seller-name").textContent = profile.seller.display_name;
  $("#seller-email").textContent = profile.seller.email;
  renderAccount(profile.connected_account);
}

async function show(profile) {
  if (!token) {
    render(null);
    return;
  }
  let me = profile;
  if (!me) {
    const answer = await call("GET", "/sellers/me");
    if (!answer.ok) {
      if (answer.status === 401 || answer.status === 403) {
        forgetSessionToken(SELLER_TOKEN);
        token = null;
        notice(message, "warn", "Please sign in again.");
      } else {
        notice(message, "bad", problemText(answer.problem));
      }
      render(null);
      return;
    }
    me = answer.data;
  }
  render(me);
  await Promise.all([loadListings(), loadSales()]);
}

function start() {
  markCurrentNav();
  const params = new URLSearchParams(window.location.search);
  const outcome = params.get("onboarding");
  if (outcome) {
    // Own keys only: `?onboarding=constructor` must not find Object.prototype's.
    const [kind, text] = Object.hasOwn(RETURNS, outcome) ? RETURNS[outcome] : ["info", "Welcome back."];
    notice(message, kind, text, token ? "" : " Sign in with your seller token to see your account.");
    // The query string says what happened, never the account's state: that is read from the API.
    window.history.replaceState(null, "", window.location.pathname);
  }
  show();
}

start();
