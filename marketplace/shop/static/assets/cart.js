// The cart: one seller's listings (the API checks out one seller at a time), kept in localStorage so the
// cancel page, a reload or another tab finds it again. Prices here are for display only: the API prices
// every line itself when the cart is checked out.
import {
  BUYER_TOKEN,
  api,
  clearNotice,
  formatMoney,
  h,
  keepOrderToken,
  leaveFor,
  notice,
  problemText,
  sessionToken,
  slugOf,
} from "/shop/assets/common.js";

const KEY = "shop.cart.v1";

function empty() {
  return { seller_id: null, currency: null, lines: [], order_id: null, email: "", attempt: null };
}

// A guest's checkout attempt: one random key per cart content and email, sent as `Idempotency-Key`, so
// a retry (after a 503, or "Check out again" from the cancel page) finds the same order; any change to
// the cart or the email starts a new attempt. The API never matches a guest's order by email alone.
function attemptKey(cart, email) {
  const what = JSON.stringify([email.toLowerCase(), cart.lines.map((l) => [l.listing_id, l.quantity])]);
  if (!cart.attempt || cart.attempt.what !== what) {
    // getRandomValues, not randomUUID: the latter exists only on https (or localhost) pages.
    const bytes = crypto.getRandomValues(new Uint8Array(16));
    cart.attempt = { what, key: Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("") };
  }
  return cart.attempt.key;
}

export function loadCart() {
  try {
    const cart = JSON.parse(localStorage.getItem(KEY) || "null");
    if (cart && Array.isArray(cart.lines)) return { ...empty(), ...cart };
  } catch {
    // unreadable: start again
  }
  return empty();
}

export function saveCart(cart) {
  try {
    if (cart.lines.length) localStorage.setItem(KEY, JSON.stringify(cart));
    else localStorage.removeItem(KEY);
  } catch {
    // storage disabled: the cart lives as long as the page
  }
}

export function clearCartOf(orderId) {
  const cart = loadCart();
  if (cart.order_id === orderId) saveCart(empty());
}

// Add one of `listing` (a storefront listing); returns a sentence when it cannot go in this cart.
export function addToCart(cart, listing) {
  if (cart.lines.length && cart.seller_id !== listing.seller_id) {
    return "Your cart holds another seller's items: one seller per order. Check out or empty the cart first.";
  }
  if (cart.lines.length && cart.currency !== listing.currency) {
    return `Your cart is in ${String(cart.currency).toUpperCase()}: one currency per order. Check out or empty the cart first.`;
  }
  const line = cart.lines.find((l) => l.listing_id === listing.id);
  const have = line ? line.quantity : 0;
  if (listing.stock !== null && have + 1 > listing.stock) {
    return `Only ${listing.stock} of “${listing.title}” in stock.`;
  }
  cart.seller_id = listing.seller_id;
  cart.currency = listing.currency;
  cart.order_id = null;
  if (line) line.quantity += 1;
  else
    cart.lines.push({
      listing_id: listing.id,
      title: listing.title,
      unit_amount: listing.unit_amount,
      currency: listing.currency,
      stock: listing.stock,
      quantity: 1,
    });
  saveCart(cart);
  return null;
}

function total(cart) {
  return cart.lines.reduce((sum, l) => sum + l.unit_amount * l.quantity, 0);
}

// Renders the cart into `root` (a section with #cart-body, #cart-message and #checkout-form inside).
export function mountCart(root, { onChange } = {}) {
  const body = root.querySelector("#cart-body");
  const message = root.querySelector("#cart-message");
  const form = root.querySelector("#checkout-form");
  const email = form.querySelector("input[name=email]");
  const submit = form.querySelector("button[type=submit]");
  if (!email.value) email.value = loadCart().email || "";

  function render() {
    const cart = loadCart();
    const signedIn = Boolean(sessionToken(BUYER_TOKEN)); // a signed-in buyer's email is their profile's
    email.closest("label").hidden = signedIn;
    email.required = !signedIn;
    if (!cart.lines.length) {
      body.replaceChildren(h("p", { class: "muted", text: "Your cart is empty." }));
      form.hidden = true;
      return;
    }
    const change = (line, by) => () => {
      const fresh = loadCart();
      const target = fresh.lines.find((l) => l.listing_id === line.listing_id);
      if (!target) return;
      const next = target.quantity + by;
      if (target.stock !== null && next > target.stock) {
        notice(message, "warn", `Only ${target.stock} of “${target.title}” in stock.`);
        return;
      }
      target.quantity = next;
      fresh.lines = fresh.lines.filter((l) => l.quantity > 0);
      fresh.order_id = null;
      saveCart(fresh);
      clearNotice(message);
      render();
      if (onChange) onChange();
    };
    const items = cart.lines.map((line) =>
      h(
        "li",
        { "data-listing": line.listing_id },
        h("span", { class: "title", text: line.title }),
        h("span", { class: "num", text: formatMoney(line.unit_amount * line.quantity, line.currency) }),
        h(
          "span",
          { class: "qty" },
          h("button", { type: "button", class: "secondary", "aria-label": `One fewer ${line.title}`, onclick: change(line, -1), text: "−" }),
          h("span", { class: "quantity", text: line.quantity }),
          h("button", { type: "button", class: "secondary", "aria-label": `One more ${line.title}`, onclick: change(line, +1), text: "+" }),
        ),
        h("span", { class: "muted small", text: `${formatMoney(line.unit_amount, line.currency)} each` }),
      ),
    );
    body.replaceChildren(
      h("ul", { class: "cart-lines" }, items),
      h("p", { class: "cart-total" }, h("span", { text: "Total" }), h("span", { id: "cart-total", text: formatMoney(total(cart), cart.currency) })),
      h("button", {
        type: "button",
        class: "link",
        text: "Empty cart",
        onclick: () => {
          saveCart(empty());
          clearNotice(message);
          render();
          if (onChange) onChange();
        },
      }),
    );
    form.hidden = false;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const cart = loadCart();
    if (!cart.lines.length) return;
    submit.disabled = true;
    notice(message, "info", "Opening the secure checkout…");
    const buyer = sessionToken(BUYER_TOKEN);
    const request = { lines: cart.lines.map((l) => ({ listing_id: l.listing_id, quantity: l.quantity })) };
    if (!buyer) request.email = email.value.trim();
    const idempotencyKey = buyer ? undefined : attemptKey(cart, request.email);
    saveCart(cart);
    const answer = await api("POST", "/checkout", { body: request, bearer: buyer || undefined, idempotencyKey });
    if (!answer.ok) {
      submit.disabled = false;
      const slug = slugOf(answer.problem);
      const lead =
        slug === "insufficient-stock" || slug === "listing-unavailable"
          ? "Some of your cart is no longer available. "
          : slug === "seller-cannot-sell"
            ? "This seller cannot take payments right now. "
            : "";
      notice(message, "bad", lead + problemText(answer.problem));
      return;
    }
    const order = answer.data.order;
    if (answer.data.access_token) keepOrderToken(order.id, answer.data.access_token);
    cart.order_id = order.id;
    if (request.email) cart.email = request.email; // offered again on the cancel page
    saveCart(cart);
    if (!leaveFor(answer.data.checkout_url)) {
      submit.disabled = false;
      notice(message, "bad", "The checkout could not be opened. Please try again.");
    }
  });

  render();
  return { render, message };
}
