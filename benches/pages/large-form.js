// Writes B8's page to stdout: a long form of 2,000 controls (text, email,
// number, date, textarea, select, checkbox, radio groups, a few filled in
// by the page) among 20,000 elements in all, no scripts of its own, so
// what runs on it is the agent (see docs/performance.md, row B8).
//
//   node benches/pages/large-form.js > large-form.html
'use strict';

const CONTROLS = 2000;
const ELEMENTS = 20000;
const out = [];
let elements = 4; // html, head, title, body
let controls = 0;

function control(i) {
    const id = `f${i}`;
    const label = `<label for="${id}">Field <span>${i}</span></label>`;
    switch (i % 8) {
        case 0: return [`${label}<input id="${id}" name="${id}" type="text">`, 3];
        case 1: return [`${label}<input id="${id}" name="${id}" type="email" value="${i % 3 ? '' : `p${i}@example.org`}">`, 3];
        case 2: return [`${label}<input id="${id}" name="${id}" type="number" min="0">`, 3];
        case 3: return [`${label}<textarea id="${id}" name="${id}" rows="2"></textarea>`, 3];
        case 4: return [`${label}<select id="${id}" name="${id}"><option>one</option><option>two</option><option>three</option></select>`, 6];
        case 5: return [`${label}<input id="${id}" name="${id}" type="checkbox"${i % 3 ? '' : ' checked'}>`, 3];
        case 6: return [`${label}<input id="${id}" name="${id}" type="date">`, 3];
        default: {
            // A radio group of its own name; the page checks the first.
            const g = `g${i}`;
            return [`<span>Choice ${i}</span><input type="radio" name="${g}" value="a" checked><input type="radio" name="${g}" value="b">`, 3];
        }
    }
}

out.push('<!doctype html><html lang="en"><head><meta charset="utf-8"><title>A long form</title>');
out.push('<style>fieldset{margin:4px 0}div.row{display:flex;gap:6px}p{margin:2px 0}</style></head><body>');
out.push('<h1>A long form</h1><form action="/submit" method="post">');
elements += 3; // style, h1, form (meta counted below)
elements += 1;
let i = 0;
while (controls < CONTROLS) {
    out.push('<fieldset><legend>Section</legend>');
    elements += 2;
    for (let k = 0; k < 8 && controls < CONTROLS; k++, i++) {
        const [html, n] = control(i);
        out.push(`<div class="row">${html}</div>`);
        elements += n + 1;
        controls += i % 8 === 7 ? 2 : 1;
    }
    out.push('</fieldset>');
}
out.push('</form>');
// Text around the form up to the element count: paragraphs of three.
while (elements + 3 <= ELEMENTS) {
    out.push('<p>Terms <b>and</b> <a href="#top">conditions</a></p>');
    elements += 3;
}
while (elements < ELEMENTS) {
    out.push('<br>');
    elements += 1;
}
out.push('</body></html>\n');
process.stdout.write(out.join('\n'));
process.stderr.write(`large-form: ${controls} controls, ${elements} elements\n`);
