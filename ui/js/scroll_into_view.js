// Scrolls the element with the class st-key-<component.data.target> into view once it is drawn
// (ui/progress.py's scroll_to_progress). component.data: {target}.

export default function (component) {  // once the card is drawn (it may come a moment after this)
  let tries = 0;
  const timer = setInterval(() => {
    const card = document.querySelector('.st-key-' + component.data.target);
    if (card) card.scrollIntoView({block: 'start'});
    if (card || ++tries > 100) clearInterval(timer);
  }, 100);
  return () => clearInterval(timer);
}
