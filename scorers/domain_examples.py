"""Short example texts for each DataMan domain, embedded with the domain's description (``winnow.scorers.domains``).

A one-sentence description puts a domain at one point of the embedding space, while a domain's documents come in
many forms: Law is contracts and statutes but also court transcripts and crime reports; Entertainment is film
reviews but also novels and sports. Each domain here has eight short texts in different genres and registers
(written for winnow, not taken from any corpus). A document's similarity to a domain is the mean of its three best
similarities with the domain's description, keyword list and these texts. No text is copied from the nltk_data
documents that ``bench/domains.py`` evaluates on, but the genres were chosen knowing that set (court transcripts,
scripture, drama, bug-title lists, lower-cased tokenised reviews), so its figure is optimistic for other corpora.
"""

from __future__ import annotations

DOMAIN_EXAMPLES: dict[str, tuple[str, ...]] = {
    "Medicine": (
        "Take two tablets every six hours with water. Do not exceed eight tablets in 24 hours. Tell your doctor if "
        "you are pregnant, breast-feeding or taking other medicines.",
        "The patient, a 64-year-old man, presented with chest pain and shortness of breath. An ECG showed ST "
        "elevation and he was taken for emergency angioplasty.",
        "Possible side effects: like all medicines, this medicine can cause side effects, although not everybody "
        "gets them. Stop taking it and see a doctor at once if you get a rash or swelling of the face.",
        "In the randomised trial, patients given the new vaccine had 40% fewer hospital admissions for influenza "
        "than those given placebo, with no serious adverse events.",
        "Type 2 diabetes can often be managed with diet, exercise and metformin; insulin is added when blood "
        "glucose stays high.",
        "What is in this leaflet: what the capsules are and what they are used for, before you take them, how to "
        "take them, possible side effects, how to store them.",
        "The nurse checked his blood pressure and temperature, changed the dressing on the wound and gave him "
        "painkillers before the surgeon's morning round.",
        "Symptoms of the infection include fever, a persistent cough and fatigue. Antibiotics do not work against "
        "viruses.",
    ),
    "Finance": (
        "Shares fell 3% in early trading after the company cut its full-year profit forecast, citing weaker "
        "demand and higher costs.",
        "The central bank raised interest rates by a quarter of a point to 5.25%, its tenth increase in a row, "
        "as inflation remains above target.",
        "Net revenue for the quarter rose to $4.2 billion from $3.8 billion a year earlier; earnings per share "
        "were $1.12.",
        "The merger, valued at $12 billion in cash and stock, still needs approval from shareholders and regulators.",
        "If you are saving for retirement, a low-cost index fund spreads your investment across hundreds of "
        "companies and keeps fees down.",
        "Bond yields climbed and the dollar strengthened against the yen as investors priced in slower growth.",
        "The firm reported a pre-tax loss of 15 million pounds and said it would sell its insurance unit to "
        "reduce debt.",
        "Small businesses can deduct these expenses from taxable income, and the credit applies to the 2023 "
        "fiscal year.",
    ),
    "Law": (
        "Q. Where were you on the night of March 3rd? A. I was at home. THE COURT: The objection is overruled. "
        "The witness may answer the question. MR. DAVIS: Thank you, Your Honor.",
        "This Agreement shall be governed by the laws of the State of California. Any dispute arising under this "
        "Agreement shall be resolved by binding arbitration.",
        "The court of appeals reversed the conviction, holding that the evidence obtained without a warrant "
        "should have been suppressed.",
        "Section 12. Any person who knowingly violates this section shall be guilty of a misdemeanor and liable "
        "to a fine not exceeding $5,000.",
        "The jury found the defendant guilty on two counts of fraud, and the judge set sentencing for next month. "
        "His attorney said he would appeal.",
        "The plaintiffs allege breach of contract and negligence and seek damages; the defendants have moved to "
        "dismiss the complaint.",
        "If your landlord keeps your deposit without a reason, you may be able to take a claim to the small "
        "claims court; a solicitor can advise you of your rights.",
        "The prosecutor asked the witness to identify the defendant. Counsel for the defense cross-examined her "
        "about the lighting in the courtroom hallway and the time of the arrest.",
    ),
    "Education": (
        "Students will complete three essays and a final exam; late homework loses ten percent per day.",
        "The school board voted to hire forty new teachers and reduce class sizes in the primary grades.",
        "In this lesson, pupils learn to add fractions with different denominators using diagrams.",
        "Applications for undergraduate admission close on January 15; the university offers scholarships based "
        "on need and merit.",
        "Research on reading instruction shows that systematic phonics helps children who struggle to learn to read.",
        "The course covers the basics of statistics over twelve weeks of lectures, tutorials and quizzes.",
        "Teachers said the new curriculum leaves too little time for art and music in the classroom.",
        "Learning objectives: by the end of this unit, students should be able to explain the water cycle.",
    ),
    "Technology": (
        "Crash when opening a PDF attachment; toolbar icons missing after update; memory leak in tab manager; "
        "cannot save file to network drive",
        "Scientists have developed a battery that charges in five minutes, using a new silicon anode.",
        "The new smartphone has a faster processor, a larger screen and a camera that works better in low light.",
        "Researchers at the laboratory used a particle accelerator to measure the mass of the neutrino.",
        "Error message appears when printing from the spreadsheet application on Linux; dialog box hangs",
        "The company released a security update for its operating system to fix a flaw that let attackers take "
        "control of the computer.",
        "Engineers tested the bridge design in a wind tunnel before construction began.",
        "Astronomers discovered a planet orbiting a nearby star, and the telescope data suggest it may have water.",
    ),
    "Entertainment": (
        "The film is a clumsy thriller: the plot makes no sense, the dialogue is wooden, and even a fine cast "
        "cannot save it. Two stars.",
        "She opened the door and stopped. The room was empty, the window open, and on the table lay a single "
        "letter with her name on it. Her heart began to pound.",
        "The band's new album mixes rock and soul, and the first single has already topped the charts.",
        "United won 2-1 with a late goal from the striker, moving them up to third in the league table.",
        "this movie is funny , and the lead actor gives a great performance , but the ending drags and the "
        "director never decides what kind of story he is telling .",
        '"Get down!" shouted the captain as the ship lurched. Jack grabbed the rope and swung across the deck '
        "while the pirates fired their pistols.",
        "The hit comedy series returns for a fourth season, and the cast said fans can expect more surprises.",
        "The detective lit a cigarette and looked at the body. Somebody in this house was lying, and he meant to "
        "find out who before morning.",
    ),
    "Mathematics": (
        "Let f be a continuous function on [a, b]. Then there exists c in (a, b) such that f'(c) = (f(b) - f(a)) "
        "/ (b - a).",
        "Theorem 2. Every finite group of prime order is cyclic. Proof: let g be a non-identity element.",
        "Solve for x: 3x + 7 = 22. Subtract 7 from both sides and divide by 3, so x = 5.",
        "The probability of rolling two sixes with two fair dice is 1/36.",
        "The area of a circle is pi times the square of its radius; the circumference is two pi r.",
        "A matrix is invertible if and only if its determinant is nonzero.",
        "By induction on n, the sum of the first n odd numbers is n squared.",
        "The derivative of sin x is cos x, and the integral of 1/x is the natural logarithm of x.",
    ),
    "Coding": (
        "def add(a, b):\n    return a + b\n\nprint(add(2, 3))",
        "To install the package, run pip install requests, then import it and call requests.get(url).",
        "for (int i = 0; i < n; i++) { sum += arr[i]; }",
        "The function throws a NullPointerException when the list is empty; check for null before calling size().",
        "Use git commit to record changes, then git push to upload them to the remote repository.",
        "SELECT name, email FROM users WHERE active = 1 ORDER BY name;",
        "In JavaScript, const declares a variable that cannot be reassigned, and arrow functions keep this from "
        "the enclosing scope.",
        "The compiler reports a type error: expected an integer but found a string on line 42.",
    ),
    "Government": (
        "Fellow citizens, we meet today to renew the promise of our democracy and to preserve the liberty that "
        "our fathers won for this nation.",
        "The Senate passed the defense spending bill by 68 votes to 31, and it now goes to the House.",
        "The minister announced new rules for public sector pay, and the opposition called for a parliamentary "
        "inquiry.",
        "The Department shall submit an annual report to Congress on the implementation of the program and the "
        "funds expended.",
        "I ask the Congress to act on this budget, to cut taxes for working families and to strengthen our armed "
        "forces. The state of our Union is strong.",
        "The election commission said turnout reached 71 percent, and the governor conceded defeat late on "
        "Tuesday night.",
        "Federal agencies must publish proposed regulations and allow a period for public comment.",
        "The two governments signed a treaty on trade and security, and the ambassador was recalled for talks.",
    ),
    "Culture": (
        "Blessed are they who keep the faith, for the Lord is their shepherd; the priest read the psalm and the "
        "congregation prayed together in the church.",
        "The museum's new exhibition brings together paintings and sculpture from the Renaissance.",
        "O gentle night, thou keeper of my sighs, lend me thy stars, for I have lost the day; the poet's verses "
        "mourn a love long gone.",
        "Enter the King and his lords. KING: What news, my lord? LORD: The army marches, sire, and the queen "
        "awaits thee. Exeunt.",
        "The festival celebrates the harvest with traditional dances, songs and food passed down for generations.",
        "Historians argue that the printing press changed European society as much as the reformation of the "
        "church did.",
        "The prophet went up into the mountain, and the people waited below; and he came down unto them and spake "
        "the words of their God, and they built an altar there.",
        "The philosopher held that a good life is a life of virtue, lived in reason and in community with others.",
    ),
    "Transportation": (
        "Traffic on the motorway was backed up for ten miles after a lorry overturned near junction 4.",
        "The airline will add daily flights from the airport to three European cities this summer.",
        "Commuters face delays as the railway replaces signals on the main line between the two stations.",
        "The new electric car has a range of 400 kilometres and can be charged in thirty minutes.",
        "The container ship docked at the port after a three-week voyage, carrying freight from Asia.",
        "From the station, take bus 12 to the old town; the ferry to the island leaves every hour.",
        "The city plans to build cycle lanes and expand the tram network to cut congestion.",
        "Drivers must stop at red lights, keep to the speed limit and wear seat belts.",
    ),
    "Retail E-commerce": (
        "I bought this camera last month and the picture quality is great, but the battery life is poor. Four stars.",
        "Add to cart. Free shipping on orders over $50. In stock: ships within 2 business days.",
        "The headphones arrived quickly and sound good for the price, though the ear pads are a bit tight.",
        "Sale: 30% off all winter coats this weekend only, in stores and online.",
        "Returns are accepted within 30 days with a receipt; refunds go back to the original payment method.",
        "this player is easy to use and the menu is simple . the screen scratches easily and customer service was "
        "no help .",
        "Online shoppers spent more on holiday gifts this year, and retailers offered deep discounts.",
        "Customer rating 4.5 out of 5. Compare prices, read reviews and buy with a one-year warranty.",
    ),
    "Telecommunication": (
        "The carrier is rolling out its 5G network to fifty more cities, promising faster mobile data.",
        "Customers can switch to the new broadband plan with unlimited data and a free router.",
        "The satellite will relay television and phone signals to remote areas without cable.",
        "Dropped calls and weak signal in rural areas remain the top complaints about wireless providers.",
        "The regulator auctioned radio spectrum to mobile operators for a record sum.",
        "Your SIM card has been activated. Text HELP to 2020 for your data balance and roaming charges.",
        "Fibre optic cables carry internet traffic between continents under the sea.",
        "The telephone company will lay new lines and upgrade its exchanges this year.",
    ),
    "Agriculture": (
        "Wheat growers expect a good harvest after late rain, though frost damaged some crops in the south.",
        "Cattle prices at the saleyards rose again this week as demand for beef exports stayed strong.",
        "Farmers are urged to test their soil before applying fertiliser to reduce costs and runoff.",
        "The drought has left graziers short of feed, and many are selling sheep early.",
        "Irrigation allocations in the river valley will be cut, affecting rice and cotton farms.",
        "The dairy industry is struggling with low milk prices and rising feed costs.",
        "A new variety of barley resists disease and yields more grain per hectare.",
        "Fishermen say catches have fallen and want quotas changed to protect the fishery.",
    ),
    "Other": (
        "hey whats up lol. nm just chillin. u coming tonight? yeah maybe later",
        "Happy birthday! Hope you have a great day, see you on Saturday.",
        "Note to self: buy milk, call mom, pick up the dry cleaning.",
        "I don't know, I just feel like we never talk anymore, you know? Anyway, how was your weekend?",
        "user1: hi all\nuser2: hiya\nuser3: anyone here from texas?\nuser1: lol no",
        "Uh, yeah, well, I guess so. Um, we went there last, uh, last summer I think.",
        "Thanks so much for dinner last night, it was lovely to catch up!",
        "Random thoughts on a rainy Sunday: tea, a blanket and nothing to do.",
    ),
}
