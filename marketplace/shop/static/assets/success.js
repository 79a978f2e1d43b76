// The success page (Checkout's success_url: ?order_id=…&session_id=…). Stripe sending the browser here
// proves nothing: the page asks the API to verify the order (POST /orders/{id}/verify, which re-reads the
// session from Stripe and confirms it exactly once, whoever asks first) and polls until the answer is
// final. A reload or a second tab asks again and changes nothing.
import {
  $,
  BUYER_TOKEN,
  api,
  formatMoney,
  h,
  isUuid,
  orderToken,
  problemText,
  retryAfterMs,
  sessionToken,
  shortId,
  sleep,
} from "/shop/assets/common.js";
import { clearCartOf } from "/shop/assets/cart.js";

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;
const GIVE_UP_AFTER_MS = 120_000;
// Final for this page: nothing will change while the buyer watches (a bank debit settles in days).
const FINAL = new Set(["paid", "processing", "failed", "expired", "oversold"]);

const MESSAGES = {
  pending: ["Confirming your payment…", "Waiting for the payment to be confirmed. You can keep this page open."],
  paid: ["Payment received, thank you", "Your order is confirmed. A receipt is on its way to your email."],
  processing: [
    "Your bank payment is processing; we will email you",
    "Bank debits take a few business days to settle. Nothing more to do here: we email you when it has.",
  ],
  failed: ["The payment failed", "Nothing was charged. You can try again from your cart."],
  expired: ["This checkout expired", "The checkout was not completed in time, and nothing was charged. Your cart is still here."],
  oversold: [
    "Sorry, this sold out: you have been refunded in full",
    "Someone else bought the last one while you were paying. Your payment is being refunded in full; it shows on your statement in a few days.",
  ],
};

const headline = $("#headline");
const detail = $("#detail");
const spinner = $("#spinner");
const statusBadge = $("#order-status");
const summary = $("#summary");
const actions = $("#actions");

function say(title, text, { busy = false } = {}) {
  headline.textContent = title;
  detail.textContent = text;
  spinner.hidden = !busy;
  document.title = `Marketplace — ${title}`;
}

function showActions(...nodes) {
  actions.replaceChildren(...nodes);
}

const toShop = () => h("a", { class: "button", href: "/shop/", text: "Back to the shop" });
const toCart = () => h("a", { class: "button secondary", href: "/shop/", text: "Back to your cart" });

function renderOrder(order) {
  const status = String(order.status);
  const [title, text] = MESSAGES[status] || [`Order ${status}`, ""];
  say(title, text, { busy: !FINAL.has(status) });
  statusBadge.hidden = false;
  statusBadge.dataset.status = status;
  statusBadge.textContent = status;
  const rows = order.lines.map((line) =>
    h(
      "tr",
      {},
      h("td", { text: `${line.title} × ${line.quantity}` }),
      h("td", { class: "num", text: formatMoney(line.amount, order.currency) }),
    ),
  );
  if (order.amount_discount) {
    rows.push(h("tr", {}, h("td", { text: "Discount" }), h("td", { class: "num", text: `−${formatMoney(order.amount_discount, order.currency)}` })));
  }
  // What Stripe charged once the order is confirmed (after any discount); the order's total before.
  const paid = order.amount_paid !== undefined && order.amount_paid !== null;
  rows.push(
    h(
      "tr",
      {},
      h("th", { text: paid ? "Paid" : "Total" }),
      h("th", { class: "num", id: "order-total", text: formatMoney(paid ? order.amount_paid : order.total, order.currency) }),
    ),
  );
  summary.replaceChildren(
    h("p", { class: "muted small", text: `Order ${shortId(order.id)}` }),
    h("table", {}, h("tbody", {}, rows)),
  );
  summary.hidden = false;
  if (status === "paid" || status === "processing" || status === "oversold") {
    clearCartOf(order.id);
    showActions(toShop());
  } else if (status === "failed" || status === "expired") {
    if (order.status_reason && status === "failed") detail.textContent = `${text} (${order.status_reason})`;
    showActions(toCart());
  }
}

async function verify(orderId, sessionId, credentials) {
  const started = Date.now();
  let delay = FIRST_DELAY_MS;
  for (;;) {
    const answer = await api("POST", `/orders/${orderId}/verify`, {
      body: sessionId ? { session_id: sessionId } : {},
      ...credentials,
    });
    let wait = delay;
    if (answer.ok) {
      renderOrder(answer.data);
      if (FINAL.has(answer.data.status)) return;
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    } else if (answer.status === 429) {
      wait = retryAfterMs(answer.headers, MAX_DELAY_MS); // the server says when
    } else if (answer.status === 404) {
      say(
        "We could not find this order",
        "This browser has no access to it (it was bought in another browser, or the link is wrong). Your confirmation email has the details.",
      );
      showActions(toShop());
      return;
    } else if (answer.status === 0 || answer.status >= 500) {
      detail.textContent = "Still confirming: the payment service did not answer; trying again.";
      wait = retryAfterMs(answer.headers, delay); // a 503 says when
      delay = Math.min(delay * 2, MAX_DELAY_MS);
    } else {
      say("We could not confirm this payment", problemText(answer.problem));
      showActions(toShop());
      return;
    }
    if (Date.now() - started > GIVE_UP_AFTER_MS) {
      say(
        "Still waiting for the payment to be confirmed",
        "This is taking longer than usual. If you paid, we email you once it is confirmed; you can also check again.",
      );
      const again = h("button", { type: "button", text: "Check again" });
      again.addEventListener("click", () => {
        say(...MESSAGES.pending, { busy: true });
        showActions();
        verify(orderId, sessionId, credentials);
      });
      showActions(again, toShop());
      return;
    }
    await sleep(wait);
  }
}

function start() {
  const params = new URLSearchParams(window.location.search);
  const orderId = params.get("order_id");
  const sessionId = params.get("session_id") || "";
  if (!isUuid(orderId)) {
    say("This link is missing its order", "Open the link from your confirmation email, or go back to the shop.");
    showActions(toShop());
    return;
  }
  const token = orderToken(orderId);
  const buyer = sessionToken(BUYER_TOKEN);
  if (!token && !buyer) {
    say(
      "This browser cannot show this order",
      "The order's key is kept in the browser that checked out. Your confirmation email has the details.",
    );
    showActions(toShop());
    return;
  }
  verify(orderId, sessionId, token ? { orderToken: token } : { bearer: buyer });
}

start();
