// The storefront: GET /listings (active listings of sellers who can take payments), and the cart.
import {
  $,
  BUYER_TOKEN,
  api,
  clearNotice,
  forgetSessionToken,
  formatMoney,
  h,
  keepSessionToken,
  markCurrentNav,
  notice,
  problemText,
  sessionToken,
} from "/shop/assets/common.js";
import { addToCart, loadCart, mountCart } from "/shop/assets/cart.js";

const grid = $("#listing-grid");
const status = $("#listings-status");
const more = $("#more");
const cart = mountCart($("#cart"));
let cursor = null;

function stockText(listing) {
  if (!listing.in_stock) return "Sold out";
  if (listing.stock === null) return "In stock (unlimited)";
  return `${listing.stock} in stock`;
}

function card(listing) {
  const add = h("button", { type: "button", text: "Add to cart", disabled: !listing.in_stock });
  add.addEventListener("click", () => {
    const current = loadCart();
    const refusal = addToCart(current, listing);
    if (refusal) notice(cart.message, "warn", refusal);
    else notice(cart.message, "good", `Added “${listing.title}”.`);
    cart.render();
  });
  return h(
    "li",
    { class: "card", "data-listing": listing.id, "data-seller": listing.seller_id },
    h("h3", { text: listing.title }),
    h("p", { class: "description", text: listing.description }),
    h("p", { class: "price", text: formatMoney(listing.unit_amount, listing.currency) }),
    h("p", { class: listing.in_stock ? "stock" : "stock out", text: stockText(listing) }),
    add,
  );
}

async function load() {
  more.disabled = true;
  const query = new URLSearchParams({ limit: "24" });
  if (cursor) query.set("cursor", cursor);
  const answer = await api("GET", `/listings?${query}`);
  more.disabled = false;
  if (!answer.ok) {
    status.hidden = false;
    notice(status, "bad", `The listings could not be loaded. ${problemText(answer.problem)}`);
    return;
  }
  grid.append(...answer.data.items.map(card));
  cursor = answer.data.next_cursor;
  more.hidden = !cursor;
  if (!grid.children.length) {
    status.textContent = "Nothing for sale yet. Sellers: open “Sell with us” to list something.";
  } else {
    status.hidden = true;
    clearNotice(status);
  }
}

// ---- an optional buyer account (bearer token in this tab's sessionStorage, as for sellers) ----------
async function showBuyer() {
  const token = sessionToken(BUYER_TOKEN);
  let buyer = null;
  if (token) {
    const answer = await api("GET", "/buyers/me", { bearer: token });
    if (answer.ok) buyer = answer.data;
    else if (answer.status === 401 || answer.status === 403) forgetSessionToken(BUYER_TOKEN);
  }
  $("#buyer-out").hidden = Boolean(buyer);
  $("#buyer-in").hidden = !buyer;
  if (buyer) $("#buyer-name").textContent = buyer.display_name;
  cart.render();
}

$("#buyer-signin").addEventListener("submit", async (event) => {
  event.preventDefault();
  const token = String(new FormData(event.target).get("token")).trim();
  const answer = await api("GET", "/buyers/me", { bearer: token });
  if (!answer.ok) {
    notice(cart.message, "bad", answer.status === 401 || answer.status === 403 ? "That is not a buyer token." : problemText(answer.problem));
    return;
  }
  keepSessionToken(BUYER_TOKEN, token);
  event.target.reset();
  clearNotice(cart.message);
  await showBuyer();
});

$("#buyer-signup").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const body = { display_name: String(form.get("display_name")).trim(), email: String(form.get("email")).trim() };
  const answer = await api("POST", "/buyers", { body });
  if (!answer.ok) {
    notice(cart.message, "bad", problemText(answer.problem));
    return;
  }
  keepSessionToken(BUYER_TOKEN, answer.data.token);
  event.target.reset();
  $("#buyer-token").textContent = answer.data.token;
  $("#buyer-token-once").hidden = false;
  await showBuyer();
});

$("#buyer-signout").addEventListener("click", () => {
  forgetSessionToken(BUYER_TOKEN);
  $("#buyer-token-once").hidden = true;
  showBuyer();
});

more.addEventListener("click", load);
showBuyer();
markCurrentNav();
load();
