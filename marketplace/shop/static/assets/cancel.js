// The cancel page (Checkout's cancel_url: ?order_id=…): the buyer left Stripe's page without paying, so
// nothing was charged; the cart (localStorage) is offered again. Checking the same cart out again within
// a few minutes gets the same order back from the API, not a second one.
import { $, h } from "/shop/assets/common.js";
import { loadCart, mountCart } from "/shop/assets/cart.js";

const cart = mountCart($("#cart"));
if (!loadCart().lines.length) {
  $("#cancel-detail").replaceChildren(
    "Nothing was charged. ",
    h("a", { href: "/shop/", text: "Browse the shop" }),
    " to start a new cart.",
  );
}
cart.render();
