// Renders an approval email and its confirm page in a real headless Chromium, the way an
// approver sees them: the link sends the approver to sign in with the identity provider (the
// local user pool's page), then the confirm page's button decides. Then another person, in
// their own browser, signs in and opens the same link. Used by the e2e test
// `approval_workflow::the_email_and_the_confirm_page_work_in_a_real_browser`, which starts
// the local cloud and checks what the clicks did.
//
// usage: node approval-pages.mjs <email.html> <screenshot dir> <comment> <password> <other person>
// prints one JSON object on stdout.
import { chromium } from "playwright-core";
import path from "node:path";

const [emailFile, shots, comment, password, otherPerson] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.MAESTRO_CHROMIUM || "/usr/bin/chromium",
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 800, height: 900 } });
  const visible = async (locator) => {
    const box = await locator.boundingBox();
    return (await locator.isVisible()) && box !== null && box.width > 20 && box.height > 10;
  };

  await page.goto("file://" + path.resolve(emailFile));
  await page.screenshot({ path: path.join(shots, "approval-email.png"), fullPage: true });
  const approve = page.getByRole("link", { name: "Approve", exact: true });
  const reject = page.getByRole("link", { name: "Reject", exact: true });
  const email = {
    approveVisible: await visible(approve),
    rejectVisible: await visible(reject),
    approveHref: await approve.getAttribute("href"),
  };

  // Following the link as a person does: the identity provider's sign-in (the address is
  // filled in from the link), a confirm page, then one button.
  const signIn = async (tab, username) => {
    const fields = {
      title: await tab.title(),
      username: await tab.inputValue("#username"),
    };
    if (username) await tab.fill("#username", username);
    await tab.fill("#password", password);
    await Promise.all([tab.waitForNavigation(), tab.click("#sign-in")]);
    return fields;
  };
  // First someone else, signed in as themselves, with the same link (forwarded, say).
  const elsewhere = await (await browser.newContext()).newPage();
  await elsewhere.goto(email.approveHref);
  await signIn(elsewhere, otherPerson);
  await elsewhere.screenshot({ path: path.join(shots, "other-person.png"), fullPage: true });
  const other = {
    title: await elsewhere.title(),
    text: await elsewhere.locator("body").innerText(),
    hasForm: (await elsewhere.locator("button#decide").count()) > 0,
  };

  // Then the approver.
  await page.goto(email.approveHref);
  await page.screenshot({ path: path.join(shots, "sign-in-page.png"), fullPage: true });
  const signedIn = await signIn(page);
  await page.screenshot({ path: path.join(shots, "confirm-page.png"), fullPage: true });
  const button = page.locator("button#decide");
  const confirm = {
    title: await page.title(),
    buttonVisible: await visible(button),
    buttonText: (await button.textContent()).trim(),
  };
  await page.fill("textarea#comment", comment);
  await Promise.all([page.waitForNavigation(), button.click()]);
  await page.screenshot({ path: path.join(shots, "decision-page.png"), fullPage: true });
  const decision = { title: await page.title(), text: await page.locator("body").innerText() };

  console.log(JSON.stringify({ email, signedIn, confirm, decision, other }));
} finally {
  await browser.close();
}
